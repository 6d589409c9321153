//! Host-side bindings of the `weir:operator` worlds.

pub mod map {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "%map",
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

pub mod evictor {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "evictor",
    });
}

pub mod trigger {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "trigger",
    });
}

pub mod session_gap {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "session-gap",
    });
}

pub mod function {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "function",
    });
}

pub mod process {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "process",
        ownership: Borrowing { duplicate_if_necessary: true },
        imports: { default: trappable },
    });
}
