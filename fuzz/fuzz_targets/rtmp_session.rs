//! Bytes from an RTMP peer → session events. The first byte chooses where the bytes start:
//! even = right after the handshake (the chunk stream, commands, media), odd = at the handshake.
//! Publish requests are accepted, so media and in-band SPS parsing are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmp::{Session, SessionEvent, SessionLimits};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let limits = SessionLimits::default();
    let mut session = if mode % 2 == 0 {
        Session::after_handshake(Some("live".into()), limits)
    } else {
        Session::with_limits(Some("live".into()), limits)
    };
    // Feed in pieces of varying size, as reads from a socket would arrive.
    let piece = 1 + (mode as usize >> 1) % 97;
    for bytes in rest.chunks(piece) {
        let Ok(events) = session.handle_input(bytes) else {
            return;
        };
        for event in events {
            if let SessionEvent::PublishRequested { .. } = event {
                let _ = session.accept_publish();
            }
        }
        let _ = session.take_outbound();
        assert!(session.buffered() <= limits.publishing.max_buffered_bytes);
        if session.is_finished() {
            return;
        }
    }
});
