fn main() {
    eprintln!("unweight: CLI not built yet");
    std::process::exit(2);
}
