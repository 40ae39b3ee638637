import ArgumentParser

/// The subcommands of vcrun (each in its own file).
enum CLICommands {
    static let vcrun: [any ParsableCommand.Type] = [
        Sample.self,
        TokenizeCommand.self,
        BenchCommand.self,
    ]
}
