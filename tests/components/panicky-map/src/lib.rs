//! Test operator: passes events through, panics on the value "boom" and
//! returns an operator error on the value "bad".
use weir_sdk::{Error, Event, Map, Output, Result};

#[derive(Default)]
pub struct Panicky;

impl Map for Panicky {
    fn map(&mut self, event: &Event<'_>, out: &mut Output) -> Result<()> {
        let v: String = event.json()?;
        match v.as_str() {
            "boom" => panic!("the guest blew up on purpose"),
            "bad" => Err(Error::new("refusing the value `bad`")),
            _ => out.emit(event.key, event.value, event.timestamp),
        }
    }
}

weir_sdk::export_map!(Panicky);
