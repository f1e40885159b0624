//! The record-shaped counterpart of the header-only benchmark plugin (see `shape.wit`).

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({ path: "shape.wit", world: "shape" });

    use exports::bench::shape::record_shape::{Guest, Msg};

    struct Shape;

    impl Guest for Shape {
        fn touch(mut m: Msg) -> Msg {
            let seen = m.headers.iter().any(|(n, _)| n == "region");
            m.headers.retain(|(n, _)| n != "x-seen");
            m.headers.push((
                "x-seen".to_string(),
                if seen { b"1".to_vec() } else { b"0".to_vec() },
            ));
            m
        }
    }

    export!(Shape);
}
