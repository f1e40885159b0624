//! A harness for the plugin-facing message API (feature `fuzzing`): random sequences of the
//! calls a guest can make on `message` resources, run against the host's implementation with
//! small limits and a small tenant budget, the way a plugin instance would make them.
//!
//! What must hold, whatever the sequence: no panic; the tenant never holds more than its
//! budget; a call that goes past a limit fails (the real host then discards the instance);
//! once the instance is gone its tenant holds nothing.

use std::sync::Arc;

use wasmtime::component::Resource;

use super::bindings::Message;
use super::bindings::bridge::plugin::types::HostMessage;
use super::budget::HeldBytes;
use super::charges::Charges;
use super::limits::{PluginLimits, StoreLimiter};
use super::log::PluginLog;
use super::state::PluginState;
use super::{AmqpTarget, KafkaTarget};

/// One call a guest can make on a message handle; `u8` picks one of the live handles.
#[derive(Debug, arbitrary::Arbitrary)]
pub enum ApiCall {
    /// `message::new`.
    New,
    /// `duplicate`.
    Duplicate(u8),
    /// `set-key`.
    SetKey(u8, Option<Vec<u8>>),
    /// `set-payload`.
    SetPayload(u8, Option<Vec<u8>>),
    /// `header`.
    Header(u8, String),
    /// `header-all`.
    HeaderAll(u8, String),
    /// `headers`, `header-names`, `payload`, `key`, `origin`, targets and properties.
    ReadAll(u8),
    /// `set-header`.
    SetHeader(u8, String, Vec<u8>),
    /// `add-header`.
    AddHeader(u8, String, Vec<u8>),
    /// `remove-header`.
    RemoveHeader(u8, String),
    /// `set-headers`.
    SetHeaders(u8, Vec<(String, Vec<u8>)>),
    /// `set-timestamp`.
    SetTimestamp(u8, Option<i64>),
    /// `set-kafka-target`.
    SetKafkaTarget(u8, Option<String>, Option<i32>),
    /// `set-amqp-target`.
    SetAmqpTarget(u8, Option<String>, Option<String>),
    /// The resource's destructor.
    Drop(u8),
    /// The call returns, handing these handles back to the host (a fan-out); the guest keeps
    /// the others for later calls. The next call starts with a new lent message.
    Return(Vec<u8>),
}

/// The tenant's budget in the harness: small, so that sequences reach it.
const BUDGET: u64 = 64 * 1024;

/// Runs `calls` as a plugin instance would make them, starting with `input` lent by the host.
///
/// # Panics
///
/// When the API breaks what it promises (see the module docs): that is a finding.
pub fn run(input: Message, calls: Vec<ApiCall>) {
    let budget = Arc::new(HeldBytes::new("fuzz", BUDGET));
    let limits = PluginLimits {
        output_bytes: 16 * 1024,
        headers: 32,
        fan_out: 16,
        ..PluginLimits::default()
    };
    let mut state = PluginState {
        wasi: wasmtime_wasi::WasiCtxBuilder::new().build(),
        table: Default::default(),
        limiter: StoreLimiter::new(&limits),
        limits: limits.clone(),
        log: PluginLog::new("fuzz", 10, 256),
        created: 0,
        charges: Charges::new(Some(Arc::clone(&budget))),
    };
    let Ok(lent) = lend(&mut state, input.clone()) else {
        return;
    };
    let mut live = vec![lent];
    for call in calls {
        let outcome = apply(&mut state, &mut live, &input, call);
        assert!(
            budget.held() <= budget.limit(),
            "the tenant holds {} bytes, more than its budget of {}",
            budget.held(),
            budget.limit()
        );
        if outcome.is_err() {
            // A trap: the host discards the instance.
            break;
        }
    }
    drop(state);
    assert_eq!(budget.held(), 0, "a discarded instance still holds bytes");
}

fn lend(state: &mut PluginState, msg: Message) -> wasmtime::Result<u32> {
    let size = msg.size();
    let res = state.table.push(msg)?;
    state.charges.lent(res.rep(), size);
    state.created = 0;
    Ok(res.rep())
}

fn pick(live: &[u32], i: u8) -> Option<Resource<Message>> {
    if live.is_empty() {
        return None;
    }
    Some(Resource::new_borrow(live[usize::from(i) % live.len()]))
}

/// Applies one call. `live[0]` is the message the host lent for the current call (a borrow:
/// the guest cannot drop it); the others are the guest's own.
fn apply(
    state: &mut PluginState,
    live: &mut Vec<u32>,
    input: &Message,
    call: ApiCall,
) -> wasmtime::Result<()> {
    use ApiCall as C;
    let handle = |i: u8| pick(live, i).ok_or_else(|| wasmtime::format_err!("no live handle"));
    match call {
        C::New => {
            let r = HostMessage::new(state)?;
            live.push(r.rep());
        }
        C::Duplicate(i) => {
            let r = state.duplicate(handle(i)?)?;
            live.push(r.rep());
        }
        C::SetKey(i, key) => state.set_key(handle(i)?, key)?,
        C::SetPayload(i, payload) => state.set_payload(handle(i)?, payload)?,
        C::Header(i, name) => {
            state.header(handle(i)?, name)?;
        }
        C::HeaderAll(i, name) => {
            state.header_all(handle(i)?, name)?;
        }
        C::ReadAll(i) => {
            let h = handle(i)?;
            state.headers(Resource::new_borrow(h.rep()))?;
            state.header_names(Resource::new_borrow(h.rep()))?;
            state.payload(Resource::new_borrow(h.rep()))?;
            state.payload_len(Resource::new_borrow(h.rep()))?;
            state.key(Resource::new_borrow(h.rep()))?;
            state.origin(Resource::new_borrow(h.rep()))?;
            state.kafka_target(Resource::new_borrow(h.rep()))?;
            state.amqp_target(Resource::new_borrow(h.rep()))?;
            state.amqp_properties(h)?;
        }
        C::SetHeader(i, name, value) => state.set_header(handle(i)?, name, value)?,
        C::AddHeader(i, name, value) => state.add_header(handle(i)?, name, value)?,
        C::RemoveHeader(i, name) => {
            state.remove_header(handle(i)?, name)?;
        }
        C::SetHeaders(i, headers) => state.set_headers(handle(i)?, headers)?,
        C::SetTimestamp(i, ts) => state.set_timestamp(handle(i)?, ts)?,
        C::SetKafkaTarget(i, topic, partition) => {
            state.set_kafka_target(handle(i)?, KafkaTarget { topic, partition })?
        }
        C::SetAmqpTarget(i, exchange, routing_key) => state.set_amqp_target(
            handle(i)?,
            AmqpTarget {
                exchange,
                routing_key,
            },
        )?,
        C::Drop(i) => {
            let rep = handle(i)?.rep();
            if rep == live[0] {
                return Ok(());
            }
            live.retain(|r| *r != rep);
            HostMessage::drop(state, Resource::<Message>::new_own(rep))?;
        }
        C::Return(picks) => {
            // The host takes back the lent message and what the guest returned, as `process`
            // does after a call.
            let mut returned: std::collections::BTreeSet<u32> = picks
                .iter()
                .filter_map(|i| pick(live, *i))
                .map(|r| r.rep())
                .collect();
            returned.insert(live[0]);
            for rep in returned {
                live.retain(|r| *r != rep);
                state.charges.release(rep);
                state
                    .table
                    .delete(Resource::<Message>::new_own(rep))
                    .map_err(wasmtime::Error::new)?;
            }
            live.insert(0, lend(state, input.clone())?);
        }
    }
    Ok(())
}
