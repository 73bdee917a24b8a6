pub(crate) async fn run(_l: &crate::store::Location, _s: Option<&str>, _a: &crate::cli::BenchArgs, _j: bool) -> Result<(), crate::error::CliError> { Ok(()) }
