-- The brand report reads a stream's brand detections frame by frame: detections name their
-- frame's publish session (with `seq`, the frame), as frame results do. Rows stored before this
-- take it from their frame's results.
ALTER TABLE detections ADD COLUMN session BIGINT NOT NULL DEFAULT 0;

UPDATE detections SET session = COALESCE((
    SELECT MIN(f.session) FROM frame_results f
    WHERE f.stream_id = detections.stream_id AND f.seq = detections.seq
      AND f.wallclock = detections.wallclock AND f.component = detections.component
), 0);

CREATE INDEX detections_by_frame ON detections (stream_id, session, seq);
