//! Links the addon against Node-API (its symbols resolve inside node at load time).

fn main() {
    napi_build::setup();
}
