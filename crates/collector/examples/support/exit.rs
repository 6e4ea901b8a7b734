//! The `main` both bench examples share: parse, run, map to an exit code
//! (2 usage, 1 failure or failed check, 0 success).

pub fn main_with<A>(
    name: &str,
    parse_args: impl FnOnce() -> Result<A, String>,
    run: impl FnOnce(A) -> Result<bool, String>,
) -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(message) => {
            eprintln!("{name}: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
