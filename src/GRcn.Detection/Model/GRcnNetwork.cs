// The detector network of every variant: backbone trunk → (cls map, loc map) → RPN on the cls
// map → RoI sampling (training) → RoI pooling from each map (with context attention on the
// path(s) configured) → RoI head(s) → class logits (R, K+1) and class-specific deltas
// (R, 4(K+1)) → losses (training) or post-processed detections (inference).
// Batches: images (N, 3, H, W) padded to a common size; per-image true sizes bound anchors,
// proposals and the context box.
using GRcn.Detection.Autograd;
using GRcn.Detection.Backbones;
using GRcn.Detection.Boxes;
using GRcn.Detection.Data;
using GRcn.Detection.Nn;
using GRcn.Detection.RoiHeads;
using GRcn.Detection.Rpn;
using GRcn.Detection.Variants;
using GRcn.Kernels;

namespace GRcn.Detection.Model;

/// <summary>One image of a prepared batch: resized size, original size, ground truth in resized pixels (0-based labels).</summary>
internal readonly record struct BatchImage(int Height, int Width, int OriginalHeight, int OriginalWidth, float[] Boxes, int[] Labels);

/// <summary>Loss terms of one training step.</summary>
/// <param name="RpnObjectness">RPN binary cross-entropy.</param>
/// <param name="RpnBox">RPN smooth-L1.</param>
/// <param name="Classifier">RoI head cross-entropy.</param>
/// <param name="BoxRegression">RoI head smooth-L1.</param>
public readonly record struct LossTerms(double RpnObjectness, double RpnBox, double Classifier, double BoxRegression)
{
    /// <summary>The sum of the four terms.</summary>
    public double Total => RpnObjectness + RpnBox + Classifier + BoxRegression;

    /// <summary>Whether every term is finite.</summary>
    public bool IsFinite => double.IsFinite(RpnObjectness) && double.IsFinite(RpnBox) && double.IsFinite(Classifier) && double.IsFinite(BoxRegression);
}

internal sealed class GRcnNetwork : Module
{
    private readonly DetectorConfig _c;
    private readonly int _k1;
    private readonly Vgg16? _vgg;
    private readonly Module? _vggLoc;
    private readonly Conv2dLayer? _clsPoolConv, _locPoolConv;
    private readonly ResNet? _resnet;
    private readonly Bottleneck[] _locBlocks = [];
    private readonly Bottleneck[] _headBBlocks = [];
    private readonly RegionProposalNetwork _rpn;
    private readonly ContextModule? _ctxCls, _ctxLoc;
    private readonly RoiFeatureHead _headA;
    private readonly RoiFeatureHead? _headB;
    private readonly BoxPredictor _predA;
    private readonly BoxPredictor? _predB;
    private readonly BoxCoder _coder;
    private readonly int _mapChannels;

    public GRcnNetwork(DetectorConfig config, Device device, SplitMix64 rng) : base(device)
    {
        _c = config;
        _k1 = config.NumClasses + 1;
        var rh = config.RoiHeads;
        int pooledChannels;
        if (config.Backbone == BackboneKind.Vgg16)
        {
            _vgg = AddModule("backbone", new Vgg16(device, rng, config.Width, config.GroupNormGroups));
            _mapChannels = _vgg.OutChannelsAt(30);
            int c4 = _vgg.OutChannelsAt(23);
            if (config.ClsPool4 == Pool4Mode.LearnedConv)
                _clsPoolConv = AddModule("cls_pool4", new Conv2dLayer(device, rng, c4, c4, 2, stride: 2));
            if (config.Split)
            {
                _vggLoc = AddModule("backbone_loc", _vgg.CloneRange(24, 30));
                if (config.LocPool4 == Pool4Mode.LearnedConv)
                    _locPoolConv = AddModule("loc_pool4", new Conv2dLayer(device, rng, c4, c4, 2, stride: 2));
            }
            pooledChannels = _mapChannels;
        }
        else
        {
            _resnet = AddModule("backbone", new ResNet(device, rng, config.Backbone == BackboneKind.ResNet50 ? 50 : 101, config.Width));
            DampResidualBranches(_resnet);
            _mapChannels = config.ResNetLayout == ResNetLayout.Det ? _resnet.OutChannels(4) : _resnet.OutChannels(3);
            if (config.Split)
            {
                var layer3 = _resnet.Layer(3);
                int from = layer3.Count - config.ResNetSplitBlocks;
                var group = AddModule("backbone_loc", new ModuleGroup(device));
                _locBlocks = new Bottleneck[config.ResNetSplitBlocks];
                for (int i = 0; i < _locBlocks.Length; i++)
                    _locBlocks[i] = group.Add($"layer3.{from + i}", layer3[from + i].Clone());
            }
            pooledChannels = _mapChannels;
        }

        _rpn = AddModule("rpn", new RegionProposalNetwork(device, rng, _mapChannels, config.Rpn));
        if (config.ContextCls) _ctxCls = AddModule("context_cls", new ContextModule(device, rng, pooledChannels, config.ContextHeads, config.ContextSize));
        if (config.ContextLoc) _ctxLoc = AddModule("context_loc", new ContextModule(device, rng, pooledChannels, config.ContextHeads, config.ContextSize));

        int s = rh.PoolSize;
        _headA = AddModule("roi_head", MakeHead(device, rng, pooledChannels, s, copy: false));
        switch (config.Head)
        {
            case HeadArrangement.Shared:
                _predA = AddModule("box_predictor", new BoxPredictor(device, rng, _headA.OutFeatures, _k1));
                break;
            case HeadArrangement.Separate:
                _headB = AddModule("roi_head_loc", MakeHead(device, rng, pooledChannels, s, copy: true));
                _predA = AddModule("box_predictor", new BoxPredictor(device, rng, _headA.OutFeatures, _k1, boxes: false));
                _predB = AddModule("box_predictor_loc", new BoxPredictor(device, rng, _headB.OutFeatures, _k1, scores: false));
                break;
            case HeadArrangement.Averaged:
                _headB = AddModule("roi_head_b", MakeHead(device, rng, pooledChannels, s, copy: true));
                _predA = AddModule("box_predictor", new BoxPredictor(device, rng, _headA.OutFeatures, _k1));
                _predB = AddModule("box_predictor_b", new BoxPredictor(device, rng, _headB.OutFeatures, _k1));
                break;
            default:
                _headB = AddModule("roi_head_loc", new ConvBoxHead(device, rng, pooledChannels, Math.Max(8, pooledChannels / 2)));
                _predA = AddModule("box_predictor", new BoxPredictor(device, rng, _headA.OutFeatures, _k1, boxes: false));
                _predB = AddModule("box_predictor_loc", new BoxPredictor(device, rng, _headB.OutFeatures, _k1, scores: false));
                break;
        }
        var w = rh.BoxWeights;
        _coder = new BoxCoder(w[0], w[1], w[2], w[3]);
        ApplyFreezing();
    }

    public DetectorConfig Config => _c;

    /// <summary>Test hook: proposals to use instead of the RPN's (the RPN still runs and computes its losses).</summary>
    internal IReadOnlyList<float[]>? FixedProposals { get; set; }

    /// <summary>The RPN's proposals of the last forward pass.</summary>
    internal IReadOnlyList<float[]>? LastProposals { get; private set; }

    public Vgg16? Vgg => _vgg;

    public ResNet? ResNet => _resnet;

    public Module? VggLoc => _vggLoc;

    /// <summary>
    /// From-scratch ResNets with frozen batch norm have no normalisation to hold the residual
    /// stream's variance, which then doubles per block (overflowing ResNet-101). Each block's
    /// last BN scale γ (bn3.weight) starts at 1/√B for B blocks, so the variance grows by at most
    /// about e over the network. Pretrained weights overwrite this.
    /// </summary>
    private static void DampResidualBranches(ResNet resnet)
    {
        var blocks = Enumerable.Range(1, 4).SelectMany(resnet.Layer).ToArray();
        var gamma = new float[blocks.Max(b => b.Bn3.Channels)];
        Array.Fill(gamma, 1f / MathF.Sqrt(blocks.Length));
        foreach (var b in blocks) b.Bn3.Weight.Load(gamma.AsSpan(0, b.Bn3.Channels));
        StateVersion.Bump();
    }

    /// <summary>The RoI feature head: FcHead for VGG16 and ResNet-det, the conv5 stage (C4) otherwise.</summary>
    private RoiFeatureHead MakeHead(Device device, SplitMix64 rng, int channels, int s, bool copy)
    {
        if (_resnet is not null && _c.ResNetLayout == ResNetLayout.C4)
        {
            int outC = _resnet.OutChannels(4);
            if (!copy) return new ResNetC4Head(device, (g, x) => _resnet.ForwardLayer(g, x, 4), outC);
            // a second conv5 stage of its own (Separate / Averaged heads)
            var blocks = _resnet.Layer(4).Select(b => b.Clone()).ToArray();
            var head = new C4CopyHead(device, blocks, outC);
            return head;
        }
        return new FcHead(device, rng, channels * s * s, _c.RoiHeads.FcDim, _c.RoiHeads.Dropout);
    }

    private void ApplyFreezing()
    {
        if (_vgg is not null)
        {
            if (_c.FreezeBackbone)
            {
                _vgg.SetTrainable(false);
                _vggLoc?.SetTrainable(false);
            }
            else
                foreach (int i in new[] { 0, 2, 5, 7, 10, 12, 14, 17, 19, 21 }.Take(_c.FrozenStages switch { <= 0 => 0, 1 => 2, 2 => 4, 3 => 7, _ => 10 }))
                {
                    _vgg.Conv(i).SetTrainable(false);
                    _vgg.Norm(i)?.SetTrainable(false);
                }
        }
        else if (_resnet is not null)
        {
            bool c4 = _c.ResNetLayout == ResNetLayout.C4;
            if (_c.FreezeBackbone)
            {
                _resnet.SetTrainable(false);
                foreach (var b in _locBlocks) b.SetTrainable(false);
                // in C4 the conv5 stage is the RoI head, not part of F
                if (c4) foreach (var b in _resnet.Layer(4)) b.SetTrainable(true);
            }
            else if (_c.FrozenStages > 0)
            {
                // stage 1 = conv1 (+ bn1), stage k ≥ 2 = layer(k − 1), as torchvision's trainable_layers counts them
                _resnet.Conv1.SetTrainable(false);
                for (int k = 1; k < Math.Min(_c.FrozenStages, 5); k++)
                    foreach (var b in _resnet.Layer(k)) b.SetTrainable(false);
            }
        }
    }

    private Variable Pool(Graph g, Variable map, Tensor rois, int size, int stride) => _c.Pooler == PoolerKind.RoiPool
        ? g.RoiPool(map, rois, new RoiPoolOptions(size, size, 1.0 / stride))
        : g.RoiAlign(map, rois, new RoiAlignOptions(size, size, 1.0 / stride, SamplingRatio: 2, Aligned: _c.Pooler == PoolerKind.RoiAlignV2));

    private Variable VggPool4(Graph g, Variable x, Pool4Mode mode, Conv2dLayer? conv) => mode switch
    {
        Pool4Mode.MaxPool => g.MaxPool2d(x, MaxPool2dOptions.Create(2, 2)),
        Pool4Mode.Remove => x,
        Pool4Mode.MaxPoolStride1 => g.MaxPool2d(x, MaxPool2dOptions.Create(2, 1)),
        _ => conv!.Forward(g, x),
    };

    private static int Pool4Stride(Pool4Mode mode) => mode is Pool4Mode.MaxPool or Pool4Mode.LearnedConv ? 16 : 8;

    /// <summary>The classification and localization maps with their strides (the same variable when not split).</summary>
    public (Variable Cls, int ClsStride, Variable Loc, int LocStride) Features(Graph g, Variable images)
    {
        if (_vgg is not null)
        {
            var conv4 = _vgg.Forward(g, images, 0, 23);
            var cls = _vgg.Forward(g, VggPool4(g, conv4, _c.ClsPool4, _clsPoolConv), 24, 30);
            int clsStride = Pool4Stride(_c.ClsPool4);
            if (_vggLoc is null) return (cls, clsStride, cls, clsStride);
            var loc = ((Vgg16Block)_vggLoc).Forward(g, VggPool4(g, conv4, _c.LocPool4, _locPoolConv));
            return (cls, clsStride, loc, Pool4Stride(_c.LocPool4));
        }
        var r = _resnet!;
        var c2 = r.ForwardLayer(g, r.ForwardLayer(g, r.Stem(g, images), 1), 2);
        if (_c.ResNetLayout == ResNetLayout.Det)
        {
            var f = r.ForwardLayer(g, r.ForwardLayer(g, c2, 3), 4, firstStride: 1);
            return (f, 16, f, 16);
        }
        if (!_c.Split)
        {
            var f = r.ForwardLayer(g, c2, 3);
            return (f, 16, f, 16);
        }
        int shared = r.Layer(3).Count - _c.ResNetSplitBlocks;
        var clsMap = r.ForwardLayer(g, c2, 3);
        var locMap = r.ForwardLayer(g, c2, 3, 0, shared, firstStride: _c.ResNetLocStride1 ? 1 : null);
        foreach (var b in _locBlocks) locMap = b.Forward(g, locMap);
        return (clsMap, 16, locMap, _c.ResNetLocStride1 ? 8 : 16);
    }

    /// <summary>Forward pass. Training: returns the loss terms and the total loss variable; inference: detections per image.</summary>
    public (Variable? Loss, LossTerms Terms, List<DetectedObject>[]? Detections) Forward(Graph g, Variable images, IReadOnlyList<BatchImage> batch, bool training, SplitMix64 rng)
    {
        int n = batch.Count;
        var (clsMap, clsStride, locMap, locStride) = Features(g, images);
        var sizes = batch.Select(b => (b.Height, b.Width)).ToArray();
        var gt = training ? batch.Select(b => b.Boxes).ToArray() : null;
        var rpn = _rpn.Forward(g, clsMap, clsStride, clsStride, sizes, gt, rng);
        var proposals = FixedProposals ?? rpn.Proposals;
        LastProposals = rpn.Proposals;

        // RoIs per image: sampled with targets in training, all proposals at test time
        var perImage = new float[n][];
        RoiSample[]? samples = null;
        if (training)
        {
            samples = new RoiSample[n];
            for (int i = 0; i < n; i++)
            {
                var labels1 = batch[i].Labels.Select(l => l + 1).ToArray();
                samples[i] = RoiTargets.Sample(proposals[i], batch[i].Boxes, labels1, _c.RoiHeads, _coder, rng);
                perImage[i] = samples[i].Rois;
            }
        }
        else
            for (int i = 0; i < n; i++) perImage[i] = proposals[i];

        int total = perImage.Sum(p => p.Length / 4);
        var roiHost = new float[5 * total];
        var batchIndexHost = new long[total];
        for (int i = 0, k = 0; i < n; i++)
            for (int j = 0; j < perImage[i].Length / 4; j++, k++)
            {
                roiHost[5 * k] = i;
                perImage[i].AsSpan(4 * j, 4).CopyTo(roiHost.AsSpan(5 * k + 1));
                batchIndexHost[k] = i;
            }
        // host → device: the sampled RoIs (5·R floats) and their images (R longs); the whole-image boxes (5·N floats)
        var rois = g.Constant(Tensor.FromSpan<float>(Device, roiHost, total, 5)).Value;
        var batchIndex = g.Constant(Tensor.FromSpan<long>(Device, batchIndexHost, total)).Value;
        var wholeHost = new float[5 * n];
        for (int i = 0; i < n; i++)
        {
            wholeHost[5 * i] = i;
            wholeHost[5 * i + 3] = batch[i].Width;
            wholeHost[5 * i + 4] = batch[i].Height;
        }
        var whole = g.Constant(Tensor.FromSpan<float>(Device, wholeHost, n, 5)).Value;

        var (logits, deltas) = Head(g, clsMap, clsStride, locMap, locStride, rois, batchIndex, whole, total);

        if (training)
        {
            var labels = samples!.SelectMany(s => s.Labels).ToArray();
            var targets = samples!.SelectMany(s => s.Targets).ToArray();
            var (clsLoss, boxLoss) = RoiLosses(g, logits, deltas, labels, targets, rois, samples!, batch);
            var loss = g.WeightedSum([(rpn.ObjectnessLoss!, 1f), (rpn.BoxLoss!, 1f), (clsLoss, 1f), (boxLoss, 1f)]);
            var terms = Scalars(rpn.ObjectnessLoss!, rpn.BoxLoss!, clsLoss, boxLoss);
            return (loss, terms, null);
        }

        // host copy (inference): class logits and deltas for post-processing, R·(K+1) + 4·R·(K+1) floats
        var lh = logits.Value.ToArray<float>();
        var dh = deltas.Value.ToArray<float>();
        var detections = new List<DetectedObject>[n];
        for (int i = 0, start = 0; i < n; i++)
        {
            int r = perImage[i].Length / 4;
            detections[i] = PostProcess.Run(lh.AsSpan(start * _k1, r * _k1), dh.AsSpan(start * 4 * _k1, r * 4 * _k1), perImage[i], _k1,
                batch[i].Height, batch[i].Width, batch[i].OriginalHeight, batch[i].OriginalWidth, _c.RoiHeads, _coder, _c.ClassNames);
            start += r;
        }
        return (null, default, detections);
    }

    /// <summary>The four loss terms on the host, gathered on the device first so that one copy brings them.</summary>
    private LossTerms Scalars(Variable rpnObjectness, Variable rpnBox, Variable cls, Variable box)
    {
        using var packed = Tensor.Empty(Device, DataType.Float32, 4);
        Variable[] parts = [rpnObjectness, rpnBox, cls, box];
        for (int i = 0; i < 4; i++) packed.CopyFrom(parts[i].Value, 0, i, 1);
        // host copy: the four scalar loss terms for the progress display, 4 floats
        var v = packed.ToArray<float>();
        return new LossTerms(v[0], v[1], v[2], v[3]);
    }

    /// <summary>Pooled features → heads → (logits (R, K+1), deltas (R, 4(K+1))).</summary>
    private (Variable Logits, Variable Deltas) Head(Graph g, Variable clsMap, int clsStride, Variable locMap, int locStride,
        Tensor rois, Tensor batchIndex, Tensor whole, int r)
    {
        int s = _c.RoiHeads.PoolSize;
        var rawCls = Pool(g, clsMap, rois, s, clsStride);
        var rawLoc = ReferenceEquals(clsMap, locMap) ? rawCls : Pool(g, locMap, rois, s, locStride);
        var pCls = _ctxCls is null ? rawCls : _ctxCls.Forward(g, rawCls, clsMap, whole, batchIndex, (gg, m, b, size) => Pool(gg, m, b, size, clsStride));
        var pLoc = _ctxLoc is null ? rawLoc : _ctxLoc.Forward(g, rawLoc, locMap, whole, batchIndex, (gg, m, b, size) => Pool(gg, m, b, size, locStride));
        bool same = ReferenceEquals(pCls, pLoc);
        switch (_c.Head)
        {
            case HeadArrangement.Shared when same:
            {
                var h = _headA.Forward(g, pCls);
                return (_predA.ClsScore!.Forward(g, h), _predA.BboxPred!.Forward(g, h));
            }
            case HeadArrangement.Shared:
            {
                // one head R, weights shared, run once over both paths' RoIs
                var h = _headA.Forward(g, g.Concat([pCls, pLoc]));
                return (_predA.ClsScore!.Forward(g, g.Slice(h, 0, r)), _predA.BboxPred!.Forward(g, g.Slice(h, r, r)));
            }
            case HeadArrangement.Averaged:
            {
                var ha = _headA.Forward(g, pCls);
                var hb = _headB!.Forward(g, pLoc);
                var logits = g.Scale(g.Add(_predA.ClsScore!.Forward(g, ha), _predB!.ClsScore!.Forward(g, hb)), 0.5f);
                var deltas = g.Scale(g.Add(_predA.BboxPred!.Forward(g, ha), _predB.BboxPred!.Forward(g, hb)), 0.5f);
                return (logits, deltas);
            }
            default:
                return (_predA.ClsScore!.Forward(g, _headA.Forward(g, pCls)), _predB!.BboxPred!.Forward(g, _headB!.Forward(g, pLoc)));
        }
    }

    /// <summary>
    /// RoI head losses. Standard: mean cross-entropy over the R sampled RoIs; smooth-L1 of the
    /// foreground RoIs' deltas for their class, summed and divided by R (torchvision's
    /// fastrcnn_loss). Harmonic (docs/variants.md): each foreground RoI's cross-entropy is weighted
    /// by 1 + IoU(its decoded box, its ground truth) and its box loss by (1 + p(its class))·h,
    /// h = IoU^γ normalised to mean 1 over the foreground RoIs; both weights are constants (no gradient).
    /// </summary>
    private (Variable Cls, Variable Box) RoiLosses(Graph g, Variable logits, Variable deltas, int[] labels, float[] targets,
        Tensor rois, RoiSample[] samples, IReadOnlyList<BatchImage> batch)
    {
        int r = labels.Length;
        var posRows = new List<int>();
        for (int i = 0; i < r; i++)
            if (labels[i] > 0) posRows.Add(i);
        var rows = posRows.ToArray();
        var classes = rows.Select(i => labels[i]).ToArray();
        var posTargets = new float[4 * rows.Length];
        for (int j = 0; j < rows.Length; j++) targets.AsSpan(4 * rows[j], 4).CopyTo(posTargets.AsSpan(4 * j));
        if (!_c.HarmonicLoss)
            return (Losses.SoftmaxCrossEntropy(g, logits, labels),
                    Losses.SmoothL1(g, deltas, rows, classes, posTargets, _c.RoiHeads.SmoothL1Beta, Math.Max(r, 1)));

        // the Harmonic weights on the device from the logits, deltas and RoIs; the foreground RoIs' ground truth goes up (4·R⁺ floats)
        var gt = new float[4 * rows.Length];
        var gtOf = new (int Image, int Gt)[r];
        for (int i = 0, k = 0; i < samples.Length; i++)
            foreach (var m in samples[i].MatchedGt) gtOf[k++] = (i, m);
        for (int j = 0; j < rows.Length; j++)
        {
            var (img, gi) = gtOf[rows[j]];
            batch[img].Boxes.AsSpan(4 * gi, 4).CopyTo(gt.AsSpan(4 * j));
        }
        using var clsWeights = Tensor.Empty(Device, DataType.Float32, r);
        using var boxWeights = Tensor.Empty(Device, DataType.Float32, rows.Length);
        Loss.HarmonicWeights(logits.Value, deltas.Value, rois, rows, classes, gt, _c.HarmonicIouGamma, _coder.Coding, clsWeights, boxWeights);
        return (Losses.SoftmaxCrossEntropy(g, logits, labels, clsWeights),
                Losses.SmoothL1(g, deltas, rows, classes, posTargets, _c.RoiHeads.SmoothL1Beta, Math.Max(r, 1), boxWeights));
    }

    /// <summary>A C4 head over copies of the conv5 blocks (second head of Separate / Averaged).</summary>
    private sealed class C4CopyHead : RoiFeatureHead
    {
        private readonly Bottleneck[] _blocks;

        public C4CopyHead(Device device, Bottleneck[] blocks, int outChannels) : base(device)
        {
            _blocks = blocks;
            for (int i = 0; i < blocks.Length; i++) AddModule($"layer4.{i}", blocks[i]);
            OutFeatures = outChannels;
        }

        public override int OutFeatures { get; }

        public override Variable Forward(Graph g, Variable pooled)
        {
            var x = pooled;
            foreach (var b in _blocks) x = b.Forward(g, x);
            return g.GlobalAveragePool(x);
        }
    }
}
