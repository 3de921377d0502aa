//! Reading a component without running it: is it a component at all, and which functions and triggers does its
//! `edgefn-manifest` custom section declare?

use anyhow::{anyhow, bail};
use edgefn_manifest::SECTION_NAME;
use edgefn_manifest::record::{FunctionRecord, Trigger, decode_section};
use edgefn_manifest::router::Router;
use sha2::{Digest, Sha256};
use wasmparser::{Encoding, Parser, Payload};

/// What a component declares about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Hex sha256 of the component's bytes: its identity in storage and logs.
    pub hash: String,
    /// The functions of its manifest; empty for a plain wasi:http component built without the SDK.
    pub functions: Vec<FunctionRecord>,
}

/// Checks that `wasm` is a component and reads its manifest. Errors say what the bytes are instead.
pub fn inspect(wasm: &[u8]) -> anyhow::Result<Inspection> {
    if !wasm.starts_with(b"\0asm") {
        bail!("not a WebAssembly file (it does not start with the `\\0asm` magic)");
    }
    let mut functions = Vec::new();
    let mut first = true;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| anyhow!("malformed WebAssembly: {e}"))?;
        match payload {
            Payload::Version { encoding, .. } if first => {
                first = false;
                if encoding != Encoding::Component {
                    bail!(
                        "a core WebAssembly module, not a component: build it for `wasm32-wasip2` \
                         (cargo build --target wasm32-wasip2) or wrap it with `wasm-tools component new`"
                    );
                }
            }
            Payload::CustomSection(section) if section.name() == SECTION_NAME => {
                let records = decode_section(section.data()).map_err(|e| anyhow!("invalid edgefn manifest: {e}"))?;
                functions.extend(records);
            }
            _ => {}
        }
    }
    // A component that does not validate would be refused by wasmtime at deploy, later and less clearly ("init
    // failed: wasm validation failed"): refuse it here, where `inspect` and every deploy look.
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(wasm)
        .map_err(|e| anyhow!("invalid WebAssembly: {e}"))?;
    // A record can be present twice when the same object code is linked twice (e.g. an rlib and a cdylib copy):
    // identical records mean the same function.
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    functions.dedup();
    check_functions(&functions)?;
    Ok(Inspection { hash: hex::encode(Sha256::digest(wasm)), functions })
}

/// Refuses manifests the SDK should never produce, but that a hand-made or corrupted component could carry.
fn check_functions(functions: &[FunctionRecord]) -> anyhow::Result<()> {
    for pair in functions.windows(2) {
        if pair[0].name == pair[1].name {
            bail!("two functions are named `{}` with different triggers", pair[0].name);
        }
    }
    let inits: Vec<&str> = functions.iter().filter(|f| f.trigger == Trigger::Init).map(|f| f.name.as_str()).collect();
    if inits.len() > 1 {
        bail!("a component has at most one #[init] function, this one has {}: {}", inits.len(), inits.join(", "));
    }
    let mut router: Router<&str> = Router::new();
    for function in functions {
        match &function.trigger {
            Trigger::Http { route, method, .. } => router
                .insert_str(route, method, &function.name)
                .map_err(|e| anyhow!("function `{}`: {e}", function.name))?,
            Trigger::Cron { expression, timezone, policy } => {
                edgefn_manifest::schedule::Schedule::parse(expression, timezone)
                    .and_then(|_| policy.validate())
                    .map_err(|e| anyhow!("cron function `{}`: {e}", function.name))?;
            }
            Trigger::Queue { queue: name, delivery } | Trigger::Topic { topic: name, delivery } => {
                edgefn_manifest::record::validate_queue_name("queue or topic", name)
                    .and_then(|()| delivery.validate(name))
                    .and_then(|()| match name.starts_with(edgefn_manifest::record::RESERVED_QUEUE_PREFIX) {
                        true => Err(format!("queue or topic `{name}` is the host's own (object changes)")),
                        false => Ok(()),
                    })
                    .map_err(|e| anyhow!("function `{}`: {e}", function.name))?;
            }
            Trigger::Object { bucket, events, prefix, delivery } => {
                edgefn_manifest::record::validate_object_trigger(bucket, events, prefix)
                    .and_then(|()| {
                        delivery.validate(&edgefn_manifest::record::object_queue(bucket, "component", &function.name))
                    })
                    .map_err(|e| anyhow!("object function `{}`: {e}", function.name))?;
            }
            Trigger::Stream { stream, delivery } => {
                edgefn_manifest::record::validate_queue_name("stream", stream)
                    .and_then(|()| delivery.validate(stream))
                    .map_err(|e| anyhow!("stream function `{}`: {e}", function.name))?;
            }
            Trigger::WebSocket { route, .. } => {
                edgefn_manifest::route::RoutePattern::parse(route)
                    .map_err(|e| anyhow!("websocket function `{}`: route `{route}`: {e}", function.name))?;
            }
            Trigger::Init | Trigger::Invoke | Trigger::Workflow => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgefn_manifest::record::encode_record;

    /// The smallest component: the preamble, plus an optional custom section.
    fn component_with_section(name: &str, data: &[u8]) -> Vec<u8> {
        let mut wasm = b"\0asm\x0d\0\x01\0".to_vec();
        let mut content = Vec::new();
        content.push(name.len() as u8);
        content.extend(name.as_bytes());
        content.extend(data);
        wasm.push(0); // custom section id
        leb128(&mut wasm, content.len());
        wasm.extend(content);
        wasm
    }

    fn leb128(out: &mut Vec<u8>, mut value: usize) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn http(name: &str, route: &str) -> FunctionRecord {
        FunctionRecord {
            name: name.into(),
            trigger: Trigger::Http { route: route.into(), method: "GET".into(), auth: None },
        }
    }

    #[test]
    fn reads_the_manifest_section() {
        let mut data = encode_record(&http("b", "/b"));
        data.extend(encode_record(&http("a", "/a/{id}")));
        let inspection = inspect(&component_with_section(SECTION_NAME, &data)).unwrap();
        assert_eq!(inspection.functions, vec![http("a", "/a/{id}"), http("b", "/b")]);
        assert_eq!(inspection.hash.len(), 64);
    }

    #[test]
    fn a_component_without_manifest_has_no_functions() {
        let inspection = inspect(&component_with_section("other", b"x")).unwrap();
        assert!(inspection.functions.is_empty());
    }

    #[test]
    fn non_components_are_refused_with_what_they_are() {
        assert!(inspect(b"hello").unwrap_err().to_string().contains("not a WebAssembly file"));
        let core_module = b"\0asm\x01\0\0\0";
        assert!(inspect(core_module).unwrap_err().to_string().contains("core WebAssembly module"));
    }

    #[test]
    fn two_init_functions_are_refused_by_name() {
        let init = |name: &str| FunctionRecord { name: name.into(), trigger: Trigger::Init };
        let mut data = encode_record(&init("first"));
        data.extend(encode_record(&init("second")));
        let e = inspect(&component_with_section(SECTION_NAME, &data)).unwrap_err().to_string();
        assert!(e.contains("at most one #[init]") && e.contains("first, second"), "{e}");
    }

    #[test]
    fn conflicting_routes_inside_one_component_are_refused() {
        let mut data = encode_record(&http("a", "/x/{id}"));
        data.extend(encode_record(&http("b", "/x/{name}")));
        let e = inspect(&component_with_section(SECTION_NAME, &data)).unwrap_err().to_string();
        assert!(e.contains("function `b`") && e.contains("/x/{id}"), "{e}");
    }
}
