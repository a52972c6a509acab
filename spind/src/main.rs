//! The `spind` binary: the daemon's entry point, nothing else (see the library).

fn main() {
    std::process::exit(spind::main_with_args(std::env::args_os().skip(1)));
}
