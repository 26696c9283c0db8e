import { describe, expect, it } from 'vitest';
import { StageComponent } from './models';
import { label, withVersion, without } from './pipeline';

const stage: StageComponent[] = [
  { name: 'object-detector', version: 0, config: {} },
  { name: 'cups', version: 2, config: { 'min-score': '0.4' } },
];

describe('pipeline edits', () => {
  it('names bundled components by name and uploads by name@version', () => {
    expect(stage.map(label)).toEqual(['object-detector', 'cups@2']);
  });

  it('swaps a version in place, keeping its settings (a rollback is the same)', () => {
    expect(withVersion(stage, 'cups', 1).detector).toEqual([
      { name: 'object-detector', version: 0, config: {} },
      { name: 'cups', version: 1, config: { 'min-score': '0.4' } },
    ]);
  });

  it('adds a component that is not in the stage at the end, and removes one', () => {
    expect(withVersion(stage, 'logos', 3).detector?.map((c) => c.name)).toEqual([
      'object-detector',
      'cups',
      'logos',
    ]);
    expect(without(stage, 'object-detector').detector).toEqual([
      { name: 'cups', version: 2, config: { 'min-score': '0.4' } },
    ]);
  });
});
