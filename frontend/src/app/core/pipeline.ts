import { PipelineRequest, StageComponent } from './models';

/** How a stage component is named on detections and in the dashboard. */
export function label(c: { name: string; version: number }): string {
  return c.version === 0 ? c.name : `${c.name}@${c.version}`;
}

/**
 * The detector stage with `name` at `version`: the version replaces the one of that name already
 * in the stage (a swap or a rollback, keeping its place and settings), or joins at the end.
 */
export function withVersion(
  stage: StageComponent[],
  name: string,
  version: number,
): PipelineRequest {
  const present = stage.some((c) => c.name === name);
  const next = present
    ? stage.map((c) => (c.name === name ? { ...c, version } : c))
    : [...stage, { name, version, config: {} }];
  return { detector: next.map(({ name, version, config }) => ({ name, version, config })) };
}

/** The detector stage without `name`. */
export function without(stage: StageComponent[], name: string): PipelineRequest {
  return {
    detector: stage
      .filter((c) => c.name !== name)
      .map(({ name, version, config }) => ({ name, version, config })),
  };
}
