//! Test operator that tries to make the host pay, chosen by
//! `config.mode`: `declare-many` declares 2,000 value states; `hoard`
//! writes 100 MiB of map state per event through host calls; `timers`
//! registers `config.n` timers per event; `chase` registers, on every
//! timer, another one just after it, which the watermark has already
//! passed at the end of input, so a firing would never end; `slow-key`
//! spins `config.n` rounds on every event whose key is `config.key` (a
//! consumer slow on one key, so on one subtask).
use weir_sdk::{Context, Event, KeyedProcessFunction, MapState, OpenContext, Output, Result, TimeDomain, ValueState};

#[derive(Default)]
pub struct Hostile {
    mode: String,
    n: i64,
    key: String,
    hoard: MapState<u32, String>,
}

impl KeyedProcessFunction for Hostile {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
        self.mode = ctx.config().get("mode").and_then(|m| m.as_str()).unwrap_or("").to_owned();
        self.n = ctx.config().get("n").and_then(|n| n.as_i64()).unwrap_or(0);
        self.key = ctx.config().get("key").and_then(|k| k.as_str()).unwrap_or("").to_owned();
        if self.mode == "declare-many" {
            for i in 0..2000 {
                let _: ValueState<u8> = ctx.value_state(&format!("s{i}"));
            }
        }
        self.hoard = ctx.map_state("hoard");
        Ok(())
    }

    fn process(&mut self, event: &Event<'_>, ctx: &mut Context<'_>, _out: &mut Output) -> Result<()> {
        let ts = event.timestamp.unwrap_or(0);
        match self.mode.as_str() {
            "hoard" => {
                let big = "x".repeat(1 << 20);
                for i in 0..100 {
                    self.hoard.put(ctx, &i, &big)?;
                }
            }
            "timers" => {
                for i in 0..self.n {
                    ctx.register_event_time_timer(ts * 10_000_000 + i);
                }
            }
            "chase" => ctx.register_event_time_timer(ts),
            "slow-key" if event.key == self.key.as_bytes() => {
                let mut x = ts as u64;
                for i in 0..self.n as u64 {
                    x = std::hint::black_box(x.rotate_left(5) ^ i);
                }
                std::hint::black_box(x);
            }
            _ => {}
        }
        Ok(())
    }

    fn on_timer(&mut self, ts: i64, _domain: TimeDomain, ctx: &mut Context<'_>, _out: &mut Output) -> Result<()> {
        if self.mode == "chase" {
            ctx.register_event_time_timer(ts + 1);
        }
        Ok(())
    }
}

weir_sdk::export_process!(Hostile);
