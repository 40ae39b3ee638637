// Progress display and interrupt handling shared by the vcconv and vcrun subcommands. It lives in
// the library (not in one executable) so both CLIs draw progress the same way; nothing here parses
// arguments.
import Dispatch
import Foundation
import VCFormats
#if canImport(Glibc)
import Glibc
#endif

/// A one-line progress bar on stderr, drawn only when stderr is a terminal and the job is big.
public final class ProgressBar {
    private let enabled: Bool
    private var lastDraw = 0.0
    private var lastPhase = ""
    private var drawn = false
    private let start = Date()

    public init(bigFileBytes: Int, threshold: Int = 64 << 20) {
        enabled = isatty(2) == 1 && bigFileBytes >= threshold
    }

    public func update(_ p: JobProgress) {
        guard enabled else { return }
        let now = Date().timeIntervalSince1970
        let finished = p.done >= p.total
        guard finished || now - lastDraw >= 0.1 || p.phase != lastPhase else { return }
        lastDraw = now
        lastPhase = p.phase
        let frac = p.total > 0 ? min(1, Double(p.done) / Double(p.total)) : 0
        let width = 30
        let filled = Int(frac * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        var item = p.item
        if item.count > 50 { item = "..." + item.suffix(47) }
        let line = "\r\(p.phase.padding(toLength: 10, withPad: " ", startingAt: 0)) [\(bar)] \(String(format: "%5.1f", frac * 100))% \(item)"
        FileHandle.standardError.write(Data((line + "\u{1B}[K").utf8))
        drawn = true
    }

    public func finish() {
        guard enabled, drawn else { return }
        FileHandle.standardError.write(Data(String(format: "\r\u{1B}[Kdone in %.1f s\n", Date().timeIntervalSince(start)).utf8))
    }
}

/// While alive, SIGINT / SIGTERM remove every temporary output file and exit (130 / 143), so an
/// interrupted import or export leaves nothing behind. The handler runs on a dispatch queue, not
/// in signal context.
public final class InterruptCleanup {
    private var sources: [DispatchSourceSignal] = []

    public init() {
        for (sig, code) in [(SIGINT, Int32(130)), (SIGTERM, Int32(143))] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler {
                PendingOutputs.shared.removeAll()
                FileHandle.standardError.write(Data("\ninterrupted: temporary output removed\n".utf8))
                _exit(code)
            }
            s.resume()
            sources.append(s)
        }
    }

    deinit {
        for s in sources { s.cancel() }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}

public func printErr(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

public func humanBytes(_ n: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var v = Double(n), i = 0
    while v >= 1000 && i < units.count - 1 { v /= 1000; i += 1 }
    return i == 0 ? "\(n) B" : String(format: "%.2f ", v) + units[i]
}
