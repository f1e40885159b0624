//! What the fuzz targets share.

use lapin::types::FieldTable;
use lapin::types::generation::gen_field_table;
use lapin::types::parsing::parse_field_table;

/// `table` written as AMQP puts it on the wire, and read back.
///
/// # Panics
///
/// When the table does not serialise or its bytes do not parse: a finding.
pub fn through_the_wire(table: &FieldTable) -> FieldTable {
    let (bytes, _) = cookie_factory::r#gen(gen_field_table(table), Vec::new())
        .expect("a field table serialises");
    parse_field_table(bytes.as_slice())
        .expect("a field table the bridge writes parses")
        .1
}
