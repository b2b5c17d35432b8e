pub fn run(_a: Args) -> anyhow::Result<()> {
    todo!()
}
#[derive(clap::Args)]
pub struct Args {}
