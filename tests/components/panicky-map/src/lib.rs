//! Test operator: passes events through, panics on the value "boom",
//! returns an operator error on the value "bad", spins forever on "spin"
//! grows its memory without bound on "hog" and sleeps an hour on "nap".
use weir_sdk::{Error, Event, Map, Output, Result};

#[derive(Default)]
pub struct Panicky;

impl Map for Panicky {
    fn map(&mut self, event: &Event<'_>, out: &mut Output) -> Result<()> {
        let v: String = event.json()?;
        match v.as_str() {
            "boom" => panic!("the guest blew up on purpose"),
            "bad" => Err(Error::new("refusing the value `bad`")),
            "nap" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                out.emit(event.key, event.value, event.timestamp)
            }
            "spin" => loop {
                std::hint::black_box(&v);
            },
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => out.emit(event.key, event.value, event.timestamp),
        }
    }
}

weir_sdk::export_map!(Panicky);
