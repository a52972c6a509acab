fn main() {
    std::process::exit(spind::daemon::main_with_args(std::env::args_os().skip(1)));
}
