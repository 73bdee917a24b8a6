use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub id: String,
    pub name: String,
}

#[aggregate]
impl Profile {
    #[event("renamed")]
    pub fn rename(&mut self, name: &str) {
        self.name = name.to_owned();
    }
}

fn main() {}
