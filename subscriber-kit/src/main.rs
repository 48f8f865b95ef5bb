use clap::Parser;

/// Shirase agent: turns change notices into coalesced PULL API calls.
///
/// Not built yet: this binary only prints its help. See ARCHITECTURE.md.
#[derive(Debug, Parser)]
#[command(name = "shirase-agent", version)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    eprintln!("shirase-agent: not built yet (arrives with the agent issue); see --help");
    std::process::exit(2);
}
