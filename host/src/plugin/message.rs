//! The `message` resource: the methods that let a guest read and edit a host-owned
//! [`Message`] without copying what it does not ask for, within its output limits.

use bytes::Bytes;
use wasmtime::component::Resource;

use super::bindings::bridge::plugin::types::{self, Headers};
use super::bindings::{AmqpProperties, AmqpTarget, KafkaTarget, Message, Origin};
use super::error::LimitHit;
use super::state::PluginState;

impl PluginState {
    fn msg(&self, r: &Resource<Message>) -> wasmtime::Result<&Message> {
        Ok(self.table.get(r)?)
    }

    fn msg_mut(&mut self, r: &Resource<Message>) -> wasmtime::Result<&mut Message> {
        Ok(self.table.get_mut(r)?)
    }

    fn check_bytes(&self, what: &str, len: usize) -> wasmtime::Result<()> {
        let limit = self.limits.output_bytes;
        if len as u64 > limit {
            return Err(wasmtime::Error::new(LimitHit::Output(format!(
                "{what} of {len} bytes is larger than {limit} bytes"
            ))));
        }
        Ok(())
    }

    fn check_headers(&self, count: usize) -> wasmtime::Result<()> {
        let limit = self.limits.headers as usize;
        if count > limit {
            return Err(wasmtime::Error::new(LimitHit::Output(format!(
                "{count} headers are more than {limit}"
            ))));
        }
        Ok(())
    }

    fn new_message(&mut self, msg: Message) -> wasmtime::Result<Resource<Message>> {
        self.created += 1;
        let limit = self.limits.fan_out;
        if self.created > limit {
            return Err(wasmtime::Error::new(LimitHit::Output(format!(
                "more than {limit} messages created in one call"
            ))));
        }
        let size = msg.size();
        let res = self.table.push(msg)?;
        self.charges
            .resize(res.rep(), size)
            .map_err(wasmtime::Error::new)?;
        Ok(res)
    }

    /// Charges the tenant for what message `r` holds now.
    fn recharge(&mut self, r: &Resource<Message>) -> wasmtime::Result<()> {
        let size = self.msg(r)?.size();
        self.charges
            .resize(r.rep(), size)
            .map_err(wasmtime::Error::new)
    }
}

impl types::Host for PluginState {}

impl types::HostMessage for PluginState {
    fn new(&mut self) -> wasmtime::Result<Resource<Message>> {
        self.new_message(Message::new(None))
    }

    fn duplicate(&mut self, this: Resource<Message>) -> wasmtime::Result<Resource<Message>> {
        let copy = self.msg(&this)?.clone();
        self.new_message(copy)
    }

    fn key(&mut self, this: Resource<Message>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.msg(&this)?.key.clone())
    }

    fn set_key(&mut self, this: Resource<Message>, key: Option<Vec<u8>>) -> wasmtime::Result<()> {
        self.check_bytes("key", key.as_ref().map_or(0, Vec::len))?;
        self.msg_mut(&this)?.key = key;
        self.recharge(&this)
    }

    fn payload(&mut self, this: Resource<Message>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.msg(&this)?.payload.as_ref().map(|p| p.to_vec()))
    }

    fn payload_len(&mut self, this: Resource<Message>) -> wasmtime::Result<u64> {
        Ok(self
            .msg(&this)?
            .payload
            .as_ref()
            .map_or(0, |p| p.len() as u64))
    }

    fn set_payload(
        &mut self,
        this: Resource<Message>,
        payload: Option<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        self.check_bytes("payload", payload.as_ref().map_or(0, Vec::len))?;
        self.msg_mut(&this)?.payload = payload.map(Bytes::from);
        self.recharge(&this)
    }

    fn header(
        &mut self,
        this: Resource<Message>,
        name: String,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.msg(&this)?.header(&name).map(<[u8]>::to_vec))
    }

    fn header_all(
        &mut self,
        this: Resource<Message>,
        name: String,
    ) -> wasmtime::Result<Vec<Vec<u8>>> {
        Ok(self
            .msg(&this)?
            .headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .collect())
    }

    fn headers(&mut self, this: Resource<Message>) -> wasmtime::Result<Headers> {
        Ok(self.msg(&this)?.headers.clone())
    }

    fn header_names(&mut self, this: Resource<Message>) -> wasmtime::Result<Vec<String>> {
        Ok(self
            .msg(&this)?
            .headers
            .iter()
            .map(|(n, _)| n.clone())
            .collect())
    }

    fn set_header(
        &mut self,
        this: Resource<Message>,
        name: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.check_bytes("header value", value.len())?;
        let headers = &mut self.msg_mut(&this)?.headers;
        match headers.iter().position(|(n, _)| *n == name) {
            Some(first) => {
                headers[first].1 = value;
                let mut index = 0;
                headers.retain(|(n, _)| {
                    index += 1;
                    index - 1 == first || *n != name
                });
            }
            None => {
                let count = headers.len() + 1;
                self.check_headers(count)?;
                self.msg_mut(&this)?.headers.push((name, value));
            }
        }
        self.recharge(&this)
    }

    fn add_header(
        &mut self,
        this: Resource<Message>,
        name: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.check_bytes("header value", value.len())?;
        let count = self.msg(&this)?.headers.len() + 1;
        self.check_headers(count)?;
        self.msg_mut(&this)?.headers.push((name, value));
        self.recharge(&this)
    }

    fn remove_header(&mut self, this: Resource<Message>, name: String) -> wasmtime::Result<u32> {
        let headers = &mut self.msg_mut(&this)?.headers;
        let before = headers.len();
        headers.retain(|(n, _)| *n != name);
        Ok((before - headers.len()) as u32)
    }

    fn set_headers(&mut self, this: Resource<Message>, headers: Headers) -> wasmtime::Result<()> {
        self.check_headers(headers.len())?;
        if let Some((_, v)) = headers.iter().max_by_key(|(_, v)| v.len()) {
            self.check_bytes("header value", v.len())?;
        }
        self.msg_mut(&this)?.headers = headers;
        self.recharge(&this)
    }

    fn timestamp(&mut self, this: Resource<Message>) -> wasmtime::Result<Option<i64>> {
        Ok(self.msg(&this)?.timestamp)
    }

    fn set_timestamp(&mut self, this: Resource<Message>, ts: Option<i64>) -> wasmtime::Result<()> {
        self.msg_mut(&this)?.timestamp = ts;
        Ok(())
    }

    fn origin(&mut self, this: Resource<Message>) -> wasmtime::Result<Origin> {
        Ok(self.msg(&this)?.origin.clone())
    }

    fn kafka_target(&mut self, this: Resource<Message>) -> wasmtime::Result<KafkaTarget> {
        Ok(self.msg(&this)?.kafka_target.clone())
    }

    fn set_kafka_target(
        &mut self,
        this: Resource<Message>,
        t: KafkaTarget,
    ) -> wasmtime::Result<()> {
        self.check_bytes("topic", t.topic.as_ref().map_or(0, String::len))?;
        self.msg_mut(&this)?.kafka_target = t;
        Ok(())
    }

    fn amqp_target(&mut self, this: Resource<Message>) -> wasmtime::Result<AmqpTarget> {
        Ok(self.msg(&this)?.amqp_target.clone())
    }

    fn set_amqp_target(&mut self, this: Resource<Message>, t: AmqpTarget) -> wasmtime::Result<()> {
        let len = t.exchange.as_ref().map_or(0, String::len)
            + t.routing_key.as_ref().map_or(0, String::len);
        self.check_bytes("target", len)?;
        self.msg_mut(&this)?.amqp_target = t;
        Ok(())
    }

    fn amqp_properties(&mut self, this: Resource<Message>) -> wasmtime::Result<AmqpProperties> {
        Ok(self.msg(&this)?.amqp_properties.clone())
    }

    fn set_amqp_properties(
        &mut self,
        this: Resource<Message>,
        p: AmqpProperties,
    ) -> wasmtime::Result<()> {
        self.msg_mut(&this)?.amqp_properties = p;
        Ok(())
    }

    fn drop(&mut self, this: Resource<Message>) -> wasmtime::Result<()> {
        let rep = this.rep();
        self.table.delete(this)?;
        self.charges.release(rep);
        Ok(())
    }
}
