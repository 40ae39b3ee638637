// swift-tools-version: 6.0
// Fuzz targets for the readers of swift-videocrafter (docs/fuzzing.md). A separate package so
// that the normal `swift build` / `swift test` never sees them: they link only with libFuzzer,
//
//     cd Fuzz && swift build -c release --product fuzz-safetensors -Xswiftc -sanitize=fuzzer,address
//
// Each target is a `main.swift` that hands its input to `FuzzHarness` (Sources/VCFuzzHarness in
// the main package, which the corpus tests also run). They link with lld: the system's gold
// crashes on libFuzzer's objects.
import PackageDescription

let names = ["safetensors", "zip", "pickle", "tokenizer", "vcm", "lora"]

let package = Package(
    name: "swift-videocrafter-fuzz",
    products: names.map { .executable(name: "fuzz-\($0)", targets: ["fuzz-\($0)"]) },
    dependencies: [.package(name: "swift-videocrafter", path: "..")],
    targets: [
        .target(name: "CFuzzDriver", path: "CFuzzDriver"),
        .target(name: "FuzzMain", dependencies: ["CFuzzDriver", .product(name: "VCFuzzHarness", package: "swift-videocrafter")],
                path: "FuzzMain"),
    ] + names.map {
        .executableTarget(
            name: "fuzz-\($0)",
            dependencies: ["FuzzMain"],
            path: "Targets/\($0)",
            linkerSettings: [.unsafeFlags(["-use-ld=lld"])])
    },
    swiftLanguageModes: [.v6]
)
