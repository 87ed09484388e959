use crate::cli::global::GlobalOpts;
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(g: &GlobalOpts, _args: Args) -> Result<()> {
    let db = g.open_db().await?;
    println!("migrations applied to {}", db.label());
    Ok(())
}
