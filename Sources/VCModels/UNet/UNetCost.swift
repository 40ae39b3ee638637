// Multiply-accumulate counts of one UNet3D call, layer by layer, from the bound weight shapes and
// the activation sizes (the numbers behind `vcrun bench`'s GFLOP/s). Counts follow the work this
// port does: linear layers and 1x1 convs as `linear`, 3x3 and temporal convs as `conv`, the two
// attention products (q k^T and p v) as `attention`; norms, activations and softmax are not
// counted (as torch.utils.flop_counter does not count them). Cross-attention keys and values are
// computed once per batch item (the official code repeats the context T times first).
import VCTensor

/// The cost of one observable piece of a UNet call.
public struct UNetLayerCost: Sendable, Equatable, Codable {
    /// The observer event that ends this piece (e.g. `input_blocks.1.0.temopral_conv.in` ends the
    /// 2-D part of ResBlock `input_blocks.1.0`).
    public var event: String
    /// One of `embedding`, `conv_in`, `init_attn`, `resblock`, `temporal_conv`,
    /// `spatial_transformer`, `temporal_transformer`, `downsample`, `upsample`, `out`.
    public var component: String
    public var linearMACs: Double = 0
    public var convMACs: Double = 0
    public var attentionMACs: Double = 0

    public var macs: Double { linearMACs + convMACs + attentionMACs }
    public var flops: Double { 2 * macs }
}

extension UNet3D {
    /// MACs of one call on latents [batch*frames, height, width, in] with `contextTokens` text
    /// tokens, in the order the observer events arrive.
    public func layerCosts(batch: Int, frames: Int, height: Int, width: Int, contextTokens: Int) -> [UNetLayerCost] {
        let bt = Double(batch * frames)
        var costs: [UNetLayerCost] = []
        // Time/fps MLPs: one row per batch item.
        func mlp(_ m: TimestepMLP) -> Double { Double(batch) * (Self.inputs(m.fc1.weight) * Self.outputs(m.fc1.weight)
                                                                + Self.inputs(m.fc2.weight) * Self.outputs(m.fc2.weight)) }
        var emb = UNetLayerCost(event: "emb", component: "embedding")
        emb.linearMACs = mlp(timeEmbed) + (fpsEmbed.map(mlp) ?? 0)
        costs.append(emb)

        var h = height, w = width
        func transformer(_ event: String, _ component: String, projIn: Linear, blocks: [BasicTransformerBlock],
                         projOut: Linear, temporal: Bool) -> UNetLayerCost {
            let pixels = Double(h * w), tokens = bt * pixels
            var c = UNetLayerCost(event: event, component: component)
            let proj = tokens * (Self.inputs(projIn.weight) * Self.outputs(projIn.weight)
                                 + Self.inputs(projOut.weight) * Self.outputs(projOut.weight))
            // Kernel-1 Conv1d/Conv2d projections (init_attn, use_linear = false) count as convs.
            if projIn.weight.rank > 2 { c.convMACs = proj } else { c.linearMACs = proj }
            for block in blocks {
                let inner = Double(block.attn1.heads * block.attn1.headDim)
                let dim = Self.inputs(block.attn1.toQ.weight)
                // attn1: q, k, v from the tokens, out projection.
                c.linearMACs += tokens * (3 * dim * inner + inner * dim)
                // q k^T and p v over the attention sequences.
                let selfAtt = temporal ? Double(batch) * pixels * Double(frames * frames) * inner * 2
                                       : bt * pixels * pixels * inner * 2
                c.attentionMACs += selfAtt
                if temporal {
                    c.linearMACs += tokens * (3 * dim * inner + inner * dim)
                    c.attentionMACs += selfAtt
                } else {
                    let ctx = Self.inputs(block.attn2.toK.weight)
                    c.linearMACs += tokens * (dim * inner + inner * dim) + Double(batch * contextTokens) * ctx * inner * 2
                    c.attentionMACs += bt * pixels * Double(contextTokens) * inner * 2
                }
                let ffInner = Self.inputs(block.ff.out.weight)
                c.linearMACs += tokens * (dim * 2 * ffInner + ffInner * dim)
            }
            return c
        }
        func conv(_ event: String, _ component: String, _ c: Conv2d, outH: Int, outW: Int) -> UNetLayerCost {
            var r = UNetLayerCost(event: event, component: component)
            r.convMACs = bt * Double(outH * outW) * Self.outputs(c.weight) * Self.inputs(c.weight)
            return r
        }
        func layers(_ block: Block) {
            for (j, layer) in block.layers.enumerated() {
                let event = "\(block.name).\(j)"
                let pixels = Double(h * w)
                switch layer {
                case let .conv(c):
                    costs.append(conv(event, block.name == "input_blocks.0" ? "conv_in" : "conv", c, outH: h, outW: w))
                case let .res(r):
                    var c = UNetLayerCost(event: r.temporalConv == nil ? event : "\(r.name).temopral_conv.in", component: "resblock")
                    c.convMACs = bt * pixels * (Self.outputs(r.inConv.weight) * Self.inputs(r.inConv.weight)
                                                + Self.outputs(r.outConv.weight) * Self.inputs(r.outConv.weight))
                        + (r.skip.map { bt * pixels * Self.inputs($0.weight) * Self.outputs($0.weight) } ?? 0)
                    c.linearMACs = Double(batch) * Self.inputs(r.embProj.weight) * Self.outputs(r.embProj.weight)
                    costs.append(c)
                    if let tc = r.temporalConv {
                        var t = UNetLayerCost(event: "\(r.name).temopral_conv.out", component: "temporal_conv")
                        t.convMACs = tc.weights.reduce(0) { $0 + bt * pixels * Self.outputs($1) * Self.inputs($1) }
                        costs.append(t)
                    }
                case let .spatial(st):
                    costs.append(transformer(event, "spatial_transformer", projIn: st.projIn, blocks: st.blocks,
                                             projOut: st.projOut, temporal: false))
                case let .temporal(tt):
                    costs.append(transformer(event, "temporal_transformer", projIn: tt.projIn, blocks: tt.blocks,
                                             projOut: tt.projOut, temporal: true))
                case let .downsample(c):
                    h /= 2; w /= 2
                    costs.append(conv(event, "downsample", c, outH: h, outW: w))
                case let .upsample(c):
                    h *= 2; w *= 2
                    costs.append(conv(event, "upsample", c, outH: h, outW: w))
                }
            }
        }
        for (k, block) in inputBlocks.enumerated() {
            layers(block)
            if k == 0, let initAttn {
                costs.append(transformer("init_attn", "init_attn", projIn: initAttn.projIn, blocks: initAttn.blocks,
                                         projOut: initAttn.projOut, temporal: true))
            }
        }
        layers(middleBlock)
        for block in outputBlocks { layers(block) }
        costs.append(conv("out", "out", outConv, outH: h, outW: w))
        return costs
    }

    /// K of a weight [N, K, ...] (all but the first dimension).
    static func inputs(_ w: Tensor) -> Double { Double(w.shape.dropFirst().reduce(1, *)) }
    /// N of a weight [N, ...].
    static func outputs(_ w: Tensor) -> Double { Double(w.shape.first ?? 0) }
}
