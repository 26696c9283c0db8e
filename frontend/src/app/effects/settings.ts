import { EffectKind, EffectsControl } from '../core/models';

/** One setting of a kind's bundled selector, as the effects panel offers it. */
export interface EffectSetting {
  /** The setting's name, as the selector reads it. */
  name: string;
  label: string;
  /** A list of words, a 0..1 fraction (shown in per cent), or a `#rrggbb` colour. */
  input: 'choice' | 'fraction' | 'colour';
  choices?: readonly string[];
  /** The selector's default (what an unset setting means). */
  default: string;
}

/**
 * The settings the panel offers per kind: those of `privacy-blur`, `brand-spotlight` and
 * `scene-grade` an operator changes live (the API takes the rest: `PUT …/effects`).
 */
export const EFFECT_SETTINGS: Readonly<Record<EffectKind, readonly EffectSetting[]>> = {
  blur: [
    { name: 'style', label: 'Style', input: 'choice', choices: ['gaussian', 'pixelate'], default: 'gaussian' },
    { name: 'grow', label: 'Grow', input: 'fraction', default: '0.35' },
  ],
  highlight: [
    { name: 'colour', label: 'Colour', input: 'colour', default: '#ffc800' },
    { name: 'dim', label: 'Dim', input: 'fraction', default: '0.4' },
  ],
  'colour-grade': [
    {
      name: 'look',
      label: 'Look',
      input: 'choice',
      choices: ['neutral', 'warm', 'cool', 'punchy', 'muted', 'mono'],
      default: 'neutral',
    },
  ],
};

/** A kind's settings as the control holds them (none: the defaults). */
export function settingsOf(control: EffectsControl | null, kind: EffectKind): Record<string, string> {
  return control?.settings?.[kind] ?? {};
}

/**
 * The value of one setting as the selector runs with it: the control's (which wins), else the
 * pipeline's settings for the bundled selector when it names it, else the selector's default.
 */
export function settingValue(
  control: EffectsControl | null,
  kind: EffectKind,
  setting: EffectSetting,
  pipelineConfig: Record<string, string> = {},
): string {
  return settingsOf(control, kind)[setting.name] ?? pipelineConfig[setting.name] ?? setting.default;
}

/**
 * A kind's settings with one changed, to send whole (the API replaces a kind's settings): the
 * others stay, including those only the API sets. A value equal to the default is kept, so that
 * it wins over the pipeline's own setting.
 */
export function withSetting(
  control: EffectsControl | null,
  kind: EffectKind,
  setting: EffectSetting,
  value: string,
): Record<string, string> {
  return { ...settingsOf(control, kind), [setting.name]: value };
}
