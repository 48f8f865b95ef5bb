use clap::Parser;

/// Shirase relay: validates, authorizes and publishes change notices into NATS JetStream.
///
/// Not built yet: this binary only prints its help. See ARCHITECTURE.md.
#[derive(Debug, Parser)]
#[command(name = "shirase-relay", version)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    eprintln!("shirase-relay: not built yet (serve, provision and the operator tools arrive with the relay issue); see --help");
    std::process::exit(2);
}
