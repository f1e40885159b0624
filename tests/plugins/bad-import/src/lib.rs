//! A transform that imports `evil:net/raw-socket`, which no bridge host provides: loading it
//! must fail with an error naming the import.

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({
        inline: r#"
            package evil:net@0.1.0;

            interface raw-socket {
                open: func(host: string) -> u32;
            }

            world bad {
                import raw-socket;
                export bridge:plugin/transform@0.1.0;
            }
        "#,
        path: "../../../wit",
        world: "evil:net/bad",
        generate_all,
    });

    use exports::bridge::plugin::transform::{Guest, Message, Verdict};

    struct Bad;

    impl Guest for Bad {
        fn init(_config: Vec<(String, String)>) -> Result<(), String> {
            Ok(())
        }

        fn process(_msg: &Message) -> Verdict {
            evil::net::raw_socket::open("example.com");
            Verdict::Forward
        }
    }

    export!(Bad);
}
