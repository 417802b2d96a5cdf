use std::process::ExitCode;

#[derive(clap::Args)]
pub struct LsArgs {}
#[derive(clap::Args)]
pub struct StatArgs {}
#[derive(clap::Args)]
pub struct CatArgs {}
#[derive(clap::Args)]
pub struct GetArgs {}
#[derive(clap::Args)]
pub struct ShellArgs {}

pub fn ls(_args: LsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
pub fn stat(_args: StatArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
pub fn cat(_args: CatArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
pub fn get(_args: GetArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
pub fn shell(_args: ShellArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
