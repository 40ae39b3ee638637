// swift-tools-version: 6.0
// swift-videocrafter: a model converter (vcconv) and a CPU inference runtime (vcrun) for
// VideoCrafter2 text-to-video. The target graph is layered and acyclic (docs/architecture.md):
//   C (kernels, manifest codec, media) -> VCTensor -> {VCFormats, VCModels, VCSampling, VCVideo}
//   -> VideoCrafter (facade) -> vcconv / vcrun (the only targets that import ArgumentParser).
import PackageDescription

/// The kernels are compiled with -O3 even in debug builds (the last -O wins), so `swift test` runs
/// the numerics at full speed. No -m flags: the whole target stays baseline x86-64 so the scalar
/// `_ref` twins and the dispatchers run on any CPU; each SIMD function enables its instructions
/// with `__attribute__((target(...)))` and is only called after run-time CPU detection
/// (vck_cpu_features).
let kernelFlags: [String] = ["-O3", "-std=gnu11", "-Wall", "-Wno-unused-function"]

let package = Package(
    name: "swift-videocrafter",
    products: [
        .executable(name: "vcconv", targets: ["vcconv"]),
        .executable(name: "vcrun", targets: ["vcrun"]),
        .library(name: "VideoCrafter", targets: ["VideoCrafter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // System libraries (Debian -dev packages; scripts/ensure-deps installs them).
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CFFmpeg", pkgConfig: "libavformat",
                       providers: [.apt(["libavformat-dev", "libavcodec-dev", "libavutil-dev", "libswscale-dev"])]),
        .systemLibrary(name: "CProtobufC", pkgConfig: "libprotobuf-c", providers: [.apt(["libprotobuf-c-dev"])]),

        // Our C code. Kernels: SIMD + scalar reference twins, thread pool, BLAS calls.
        .target(name: "CVCKernels", dependencies: ["CBLAS"],
                cSettings: [.unsafeFlags(kernelFlags)],
                linkerSettings: [.linkedLibrary("openblas"), .linkedLibrary("pthread"), .linkedLibrary("m")]),
        // The .vcm manifest: protobuf-c code generated from formats/vcm.proto (scripts/gen-proto).
        .target(name: "CVCManifest", dependencies: ["CProtobufC"],
                cSettings: [.unsafeFlags(["-O2", "-Wall"])]),
        // Narrow C wrappers over libavformat/libavcodec/libswscale and libpng.
        .target(name: "CVCMedia", dependencies: ["CFFmpeg", "CPNG"],
                cSettings: [.unsafeFlags(["-O2", "-Wall"])],
                linkerSettings: [.linkedLibrary("avformat"), .linkedLibrary("avcodec"), .linkedLibrary("avutil"),
                                 .linkedLibrary("swscale"), .linkedLibrary("png16"), .linkedLibrary("m")]),

        // Swift libraries.
        .target(name: "VCTensor", dependencies: ["CVCKernels", "CZstd"]),
        .target(name: "VCFormats", dependencies: ["VCTensor", "CVCManifest"]),
        .target(name: "VCModels", dependencies: ["VCTensor", .product(name: "Yams", package: "Yams")], resources: [.copy("Resources/bpe_simple_vocab_16e6.txt.zst")]),
        .target(name: "VCSampling", dependencies: ["VCTensor"]),
        .target(name: "VCVideo", dependencies: ["CVCMedia"]),
        .target(name: "VideoCrafter", dependencies: ["VCTensor", "VCFormats", "VCModels", "VCSampling", "VCVideo"]),

        // Thin executables.
        .executableTarget(name: "vcconv", dependencies: [
            "VideoCrafter", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "vcrun", dependencies: [
            "VideoCrafter", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        // DEV ONLY, not a product: reads every tensor of a weights file to measure the readers
        // (scripts/dev/README.md).
        .executableTarget(name: "vcformats-scan", dependencies: ["VCFormats", "VCTensor"], path: "Sources/vcformats-scan"),

        // Tests (Swift Testing only; scripts/test runs `swift test --disable-xctest`).
        .target(name: "VCTestSupport", dependencies: ["VCTensor", "VCFormats"], path: "Tests/Support"),
        .testTarget(name: "CVCKernelsTests", dependencies: ["CVCKernels", "VCTestSupport"]),
        .testTarget(name: "VCTensorTests", dependencies: ["VCTensor", "VCTestSupport"]),
        .testTarget(name: "VCFormatsTests", dependencies: ["VCFormats", "VCTestSupport"]),
        .testTarget(name: "VCModelsTests", dependencies: ["VCModels", "VCFormats", "VCTestSupport"]),
        .testTarget(name: "VCSamplingTests", dependencies: ["VCSampling", "VCTestSupport"]),
        .testTarget(name: "VCVideoTests", dependencies: ["VCVideo", "VCTestSupport"]),
        .testTarget(name: "VideoCrafterTests", dependencies: ["VideoCrafter", "VCTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
