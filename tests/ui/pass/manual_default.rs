use factum::prelude::*;

#[aggregate(default)]
#[derive(Debug, Clone)]
pub struct Thermostat {
    pub id: String,
    pub target: f64,
}

impl Default for Thermostat {
    fn default() -> Self {
        Self {
            id: String::new(),
            target: 20.5,
            __factum: Default::default(),
        }
    }
}

#[aggregate]
impl Thermostat {
    #[event("target_set")]
    pub fn set_target(&mut self, target: f64) {
        self.target = target;
    }
}

async fn run() -> Result<(), Error> {
    let app = Application::<Thermostat, _>::new(InMemoryEventStore::new());
    let mut thermostat = app.load_or_create("hall".to_string()).await?;
    assert_eq!(thermostat.target, 20.5);
    assert_eq!(thermostat.id, "hall");
    thermostat.set_target(19.0);
    app.save(&mut thermostat).await?;
    assert_eq!(app.get("hall".into()).await?.target, 19.0);
    Ok(())
}

fn main() {
    tokio::runtime::Runtime::new().unwrap().block_on(run()).unwrap();
}
