//! A server `Connection` fed arbitrary client bytes in arbitrary pieces,
//! with or without permessage-deflate (see `tether_fuzz::Setup`). Checks
//! every event against RFC 6455 and the limits, that errors map to close
//! codes that may be sent and queue that close frame, that a client can
//! read everything the server wrote (pongs, echoes, the close frame), and
//! that the events and output do not depend on where the input was cut.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tether_fuzz::fuzz_connection(tether_proto::Role::Server, data);
});
