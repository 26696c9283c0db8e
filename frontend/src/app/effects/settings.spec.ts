import { EffectsControl } from '../core/models';
import { EFFECT_SETTINGS, settingValue, withSetting } from './settings';

const style = EFFECT_SETTINGS.blur.find((s) => s.name === 'style')!;
const grow = EFFECT_SETTINGS.blur.find((s) => s.name === 'grow')!;

function control(blur: Record<string, string>): EffectsControl {
  return {
    blur: 'on',
    highlight: 'auto',
    'colour-grade': 'auto',
    settings: { blur, highlight: {}, 'colour-grade': {} },
  };
}

describe('effect settings', () => {
  it('reads the control, then the pipeline, then the default', () => {
    expect(settingValue(null, 'blur', style)).toBe('gaussian');
    expect(settingValue(null, 'blur', style, { style: 'pixelate' })).toBe('pixelate');
    expect(settingValue(control({ style: 'gaussian' }), 'blur', style, { style: 'pixelate' })).toBe('gaussian');
    // A control from before settings existed has none.
    expect(settingValue({ blur: 'on', highlight: 'auto', 'colour-grade': 'auto' }, 'blur', grow)).toBe('0.35');
  });

  it('changes one setting and keeps the others, even those only the API sets', () => {
    expect(withSetting(control({ labels: 'face,person', style: 'pixelate' }), 'blur', grow, '0.5')).toEqual({
      labels: 'face,person',
      style: 'pixelate',
      grow: '0.5',
    });
    // A default chosen is kept: it must win over the pipeline's own setting.
    expect(withSetting(control({ style: 'pixelate' }), 'blur', style, 'gaussian')).toEqual({ style: 'gaussian' });
  });

  it('offers only values the API takes', () => {
    for (const settings of Object.values(EFFECT_SETTINGS)) {
      for (const s of settings) {
        if (s.input === 'choice') expect(s.choices).toContain(s.default);
        if (s.input === 'fraction') expect(Number(s.default)).toBeGreaterThanOrEqual(0);
        if (s.input === 'colour') expect(s.default).toMatch(/^#[0-9a-f]{6}$/);
      }
    }
  });
});
