//! Property tests of what a component, a macro invocation or a deploy can feed the manifest crate: whatever the
//! input, no panic, and every refusal says why. Bounded (256 cases each) so CI stays fast.

use edgefn_manifest::record::{
    CatchUp, CronPolicy, Delivery, FunctionRecord, Overlap, RouteAuth, StreamDelivery, StreamStart, Trigger,
    decode_section, encode_record, validate_queue_name,
};
use edgefn_manifest::route::RoutePattern;
use edgefn_manifest::router::{Lookup, Router};
use edgefn_manifest::schedule::Schedule;
use proptest::prelude::*;

fn trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        (
            "[ -~]{0,40}",
            "[A-Z*]{0,7}",
            proptest::option::of(("[a-z]{1,8}", proptest::collection::vec("[ -~]{1,12}", 0..3)))
        )
            .prop_map(|(route, method, auth)| Trigger::Http {
                route,
                method,
                auth: auth.map(|(authorizer, scopes)| RouteAuth { authorizer, scopes }),
            }),
        Just(Trigger::Init),
        Just(Trigger::Invoke),
        ("[ -~]{0,30}", "[ -~]{0,20}", any::<u32>(), any::<u64>(), any::<bool>()).prop_map(
            |(expression, timezone, retries, backoff_ms, skip)| Trigger::Cron {
                expression,
                timezone,
                policy: CronPolicy {
                    catch_up: if skip { CatchUp::Skip } else { CatchUp::All },
                    catch_up_limit: retries % 2_000,
                    overlap: if skip { Overlap::Skip } else { Overlap::Allow },
                    retries,
                    backoff_ms,
                },
            }
        ),
        ("[ -~]{0,30}", any::<u32>(), any::<u64>(), any::<u32>()).prop_map(
            |(queue, batch_size, max_wait_ms, concurrency)| {
                Trigger::Queue {
                    queue,
                    delivery: Delivery { batch_size, max_wait_ms, concurrency, ..Delivery::default() },
                }
            }
        ),
        ("[a-z0-9._-]{1,20}", proptest::collection::vec("created|deleted|[a-z]{1,8}", 0..3), "[ -~]{0,20}").prop_map(
            |(bucket, events, prefix)| Trigger::Object { bucket, events, prefix, delivery: Delivery::default() }
        ),
        ("[a-z0-9._-]{1,20}", any::<u32>(), any::<bool>(), proptest::option::of("[a-z]{1,8}")).prop_map(
            |(stream, batch_size, bisect, on_failure)| Trigger::Stream {
                stream,
                delivery: StreamDelivery {
                    batch_size,
                    bisect,
                    on_failure,
                    start: if bisect { StreamStart::Oldest } else { StreamStart::Latest },
                    ..StreamDelivery::default()
                },
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_or_are_refused_with_an_offset(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Err(error) = decode_section(&bytes) {
            prop_assert!(error.to_string().contains("byte"), "{error}");
        }
    }

    #[test]
    fn a_record_decodes_to_itself_even_among_others(name in "[a-z_]{1,20}", trigger in trigger(), junk in any::<u8>()) {
        let record = FunctionRecord { name, trigger };
        let mut section = encode_record(&record);
        section.extend(encode_record(&record));
        prop_assert_eq!(decode_section(&section).unwrap(), vec![record.clone(), record]);
        // A byte of garbage after valid records is refused, never read past.
        section.push(junk);
        prop_assert!(decode_section(&section).is_err());
    }

    #[test]
    fn route_patterns_parse_or_say_why_and_never_panic_on_a_path(route in "[ -~]{0,40}", path in "[ -~]{0,60}") {
        match RoutePattern::parse(&route) {
            Ok(pattern) => {
                let _ = pattern.matches(&path);
                let mut router = Router::new();
                router.insert_str(&route, "GET", ()).unwrap();
                let _ = matches!(router.lookup("POST", &path), Lookup::Found { .. });
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    #[test]
    fn cron_expressions_and_zones_parse_or_say_why(expression in "[0-9*/,LW#?@a-zA-Z -]{0,30}", zone in "[A-Za-z/_]{0,20}") {
        if let Err(error) = Schedule::parse(&expression, &zone) {
            prop_assert!(!error.is_empty());
        }
    }

    #[test]
    fn cron_policies_and_deliveries_are_bounded(trigger in trigger(), queue in "[ -~]{0,30}") {
        match trigger {
            Trigger::Cron { policy, .. } if policy.validate().is_ok() => {
                prop_assert!(policy.retries <= 100 && policy.backoff_ms <= 86_400_000);
            }
            Trigger::Queue { delivery, .. } if delivery.validate(&queue).is_ok() => {
                prop_assert!(delivery.batch_size >= 1 && delivery.max_wait_ms <= 3_600_000);
            }
            _ => {}
        }
        if validate_queue_name("queue", &queue).is_ok() {
            prop_assert!(!queue.split('/').any(|part| part == ".." || part.is_empty()));
        }
    }
}
