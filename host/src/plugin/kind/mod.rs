//! Plugin kinds: the interfaces of the `bridge:plugin` contract a component may export. The
//! table [`KINDS`] is the one list of them — the loader recognises exports by it, `plugin
//! inspect` names them from it, and the configuration checks what a mapping calls against
//! it — and each kind's calls live in a module of their own ([`transform`], [`policy`]). A
//! new kind is a row, a module and its guest bindings.

mod policy;
mod transform;

pub use transform::Outcome;

/// A plugin kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `bridge:plugin/transform`: sees every message of a mapping.
    Transform,
    /// `bridge:plugin/dead-letter-policy`: decides about failed messages.
    DeadLetterPolicy,
}

/// What the host knows about a kind.
#[derive(Debug)]
pub struct KindInfo {
    /// The kind.
    pub kind: Kind,
    /// The exported interface, without version.
    pub interface: &'static str,
    /// Its name in messages and in `plugin inspect`.
    pub name: &'static str,
    /// The mapping key that calls plugins of this kind.
    pub mapping_key: &'static str,
}

/// Every kind, in the order they are listed.
pub const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: Kind::Transform,
        interface: super::bindings::TRANSFORM_INTERFACE,
        name: "transform",
        mapping_key: "plugins",
    },
    KindInfo {
        kind: Kind::DeadLetterPolicy,
        interface: super::bindings::POLICY_INTERFACE,
        name: "dead-letter-policy",
        mapping_key: "dead_letter_policy",
    },
];

impl Kind {
    /// The kind's row in [`KINDS`].
    pub fn info(self) -> &'static KindInfo {
        KINDS.iter().find(|k| k.kind == self).unwrap_or(&KINDS[0])
    }

    /// The kind exporting `interface` (without version), if any.
    pub fn from_interface(interface: &str) -> Option<Kind> {
        KINDS
            .iter()
            .find(|k| k.interface == interface)
            .map(|k| k.kind)
    }

    fn bit(self) -> u8 {
        1 << KINDS.iter().position(|k| k.kind == self).unwrap_or(0)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.info().name)
    }
}

/// The kinds a plugin implements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    /// These kinds and `kind`.
    pub fn with(self, kind: Kind) -> Self {
        Kinds(self.0 | kind.bit())
    }

    /// Whether `kind` is among them.
    pub fn contains(self, kind: Kind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// None at all.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds, in table order.
    pub fn iter(self) -> impl Iterator<Item = Kind> {
        KINDS
            .iter()
            .map(|k| k.kind)
            .filter(move |k| self.contains(*k))
    }

    /// Their names, in table order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(|k| k.info().name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_kind_once() {
        let kinds = Kinds::default()
            .with(Kind::DeadLetterPolicy)
            .with(Kind::Transform);
        assert_eq!(kinds.names(), ["transform", "dead-letter-policy"]);
        assert_eq!(
            Kind::from_interface("bridge:plugin/dead-letter-policy"),
            Some(Kind::DeadLetterPolicy)
        );
        assert_eq!(Kind::from_interface("bridge:plugin/other"), None);
        assert!(
            !Kinds::default()
                .with(Kind::Transform)
                .contains(Kind::DeadLetterPolicy)
        );
    }
}
