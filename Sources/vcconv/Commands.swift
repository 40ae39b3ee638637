import ArgumentParser

/// The subcommands of vcconv (each in its own file).
enum CLICommands {
    static let vcconv: [any ParsableCommand.Type] = [
        Import.self, Inspect.self, Export.self, MergeLoRA.self,
    ]
}
