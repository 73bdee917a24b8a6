use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
}

#[aggregate]
impl User {
    #[event("email_changed")]
    pub fn change_email(&mut self, email: String) {
        self.email = email;
    }
}

async fn run() -> Result<(), Error> {
    let app = Application::<User, _>::new(InMemoryEventStore::new());
    let mut user = app
        .load_or_else("ann".to_string(), |id| User::create(id, "ann@example.com".into()))
        .await?;
    user.change_email("ann@example.org".into());
    app.save(&mut user).await?;
    let user = app.get("ann".into()).await?;
    assert_eq!(user.id(), "ann");
    assert_eq!(user.email, "ann@example.org");
    Ok(())
}

fn main() {
    tokio::runtime::Runtime::new().unwrap().block_on(run()).unwrap();
}
