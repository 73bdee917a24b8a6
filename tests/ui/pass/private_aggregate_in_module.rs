// A private aggregate inside a private module, with the lints that catch
// over-wide visibility: the generated items follow the struct's visibility.
#![deny(warnings, unreachable_pub, private_interfaces, private_bounds, dead_code)]

mod inventory {
    use factum::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Sku(String);

    #[aggregate]
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Stock {
        pub(crate) id: String,
        count: u32,
    }

    #[aggregate]
    impl Stock {
        #[event("received")]
        pub(crate) fn receive(&mut self, count: u32) {
            self.count += count;
        }

        #[event("relabelled")]
        fn relabel(&mut self, sku: Sku) {
            let _ = sku;
        }

        pub(crate) fn count(&self) -> u32 {
            self.count
        }

        pub(crate) fn relabel_all(&mut self) {
            self.relabel(Sku("x".into()));
        }
    }

    pub(crate) fn demo() -> (u32, usize) {
        let mut stock = Stock::create("s".into(), 1);
        stock.receive(2);
        stock.relabel_all();
        let _ = StockCreated {
            id: String::new(),
            count: 0,
        };
        (stock.count(), stock.pending_events().len())
    }
}

fn main() {
    assert_eq!(inventory::demo(), (3, 3));
}
