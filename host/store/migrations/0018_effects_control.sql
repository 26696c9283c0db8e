-- Manual control of a stream's effects (PUT /api/v1/streams/{id}/effects): per effect kind,
-- `on` (forced: the bundled selector of that kind runs), `off` (never rendered) or `auto` (as the
-- pipeline's effect selectors choose). JSON: {"blur": "on", "colour-grade": "off"}; absent: auto.
ALTER TABLE streams ADD COLUMN effects_control TEXT NOT NULL DEFAULT '{}';
