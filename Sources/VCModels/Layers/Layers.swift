// Building blocks shared by the text encoder, the VAE and the UNet. Each binds its tensors by
// canonical name through a WeightBinder (strict: every shape is checked) and runs on
// channels-last f32 activations.
import VCTensor

/// nn.Linear: y = x W^T + b. W [out, in] in any weight type (f32/f16/bf16/q8_0).
public struct Linear: Sendable {
    public let weight: Tensor
    public let bias: Tensor?

    public init(_ b: WeightBinder, _ prefix: String, in inFeatures: Int, out outFeatures: Int, bias: Bool = true) {
        weight = b.take("\(prefix).weight", [outFeatures, inFeatures], allowQuantized: true)
        self.bias = bias ? b.take("\(prefix).bias", [outFeatures]) : nil
    }

    /// A kernel-1 Conv1d / 1x1 Conv2d used as a linear layer: weight [out, in, 1] or [out, in, 1, 1].
    public init(_ b: WeightBinder, _ prefix: String, in inFeatures: Int, out outFeatures: Int, kernelDims: Int) {
        weight = b.take("\(prefix).weight", [outFeatures, inFeatures] + Array(repeating: 1, count: kernelDims), allowQuantized: true)
        bias = b.take("\(prefix).bias", [outFeatures])
    }

    // [..., in] -> [..., out]
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try Ops.linear(x, weight, bias) }
}

/// nn.Conv2d on channels-last input: [N, H, W, Cin] -> [N, OH, OW, Cout].
public struct Conv2d: Sendable {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: Int
    public let padding: Int

    public init(_ b: WeightBinder, _ prefix: String, in cin: Int, out cout: Int, kernel: Int = 3, stride: Int = 1, padding: Int = 1, bias: Bool = true) {
        weight = b.take("\(prefix).weight", [cout, cin, kernel, kernel], allowQuantized: true)
        self.bias = bias ? b.take("\(prefix).bias", [cout]) : nil
        self.stride = stride
        self.padding = padding
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try Ops.conv2d(x, weight, bias, stride: stride, padding: padding)
    }
}

/// nn.GroupNorm(groups, C, eps) with affine parameters.
public struct GroupNorm: Sendable {
    public let weight: Tensor
    public let bias: Tensor
    public let groups: Int
    public let eps: Float

    public init(_ b: WeightBinder, _ prefix: String, channels: Int, groups: Int = 32, eps: Float) {
        weight = b.take("\(prefix).weight", [channels])
        bias = b.take("\(prefix).bias", [channels])
        self.groups = groups
        self.eps = eps
    }

    /// Normalises `samples` independent samples (frames for per-frame norms, batch items for
    /// the temporal blocks whose statistics span all frames).
    public func callAsFunction(_ x: Tensor, samples: Int, activation: Ops.Activation = .none) throws -> Tensor {
        try Ops.groupNorm(x, samples: samples, groups: groups, weight: weight, bias: bias, eps: eps, activation: activation)
    }

    /// The per-sample affine of this norm for x (to fold into a following convolution's input).
    public func statistics(_ x: Tensor, samples: Int) throws -> Ops.NormAffine {
        try Ops.groupNormStatistics(x, samples: samples, groups: groups, weight: weight, bias: bias, eps: eps)
    }
}

/// nn.LayerNorm(C, eps) with affine parameters.
public struct LayerNorm: Sendable {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float

    public init(_ b: WeightBinder, _ prefix: String, channels: Int, eps: Float = 1e-5) {
        weight = b.take("\(prefix).weight", [channels])
        bias = b.take("\(prefix).bias", [channels])
        self.eps = eps
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try Ops.layerNorm(x, weight: weight, bias: bias, eps: eps)
    }
}
