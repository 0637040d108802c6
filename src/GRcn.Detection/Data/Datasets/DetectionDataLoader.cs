// Batches for training and evaluation: an epoch visits the dataset in a seeded permutation
// (reshuffled per epoch), and each sample is loaded, decoded, resized by the detection rule,
// randomly mirrored and normalised into a float (3, H, W) buffer with its boxes mapped to the
// resized image. Work: `Workers` background threads take samples in epoch order and may run
// at most `PrefetchBatches` batches ahead of the consumer; results land in a ring of slots and
// are handed out strictly in order, so the output is identical whatever the thread timing or
// worker count (the flip of sample i in epoch e is a hash of (seed, e, i), and the shorter side
// of batch b, when several are allowed, a hash of (seed, e, b): never a shared Random). Pixel
// buffers come from ArrayPool<float>.Shared and go back when a batch is disposed.
using System.Buffers;
using System.Collections;
using System.Runtime.ExceptionServices;

namespace GRcn.Detection.Data;

/// <summary>Options of <see cref="DetectionDataLoader"/>.</summary>
public sealed record DataLoaderOptions
{
    /// <summary>Images per batch (≥ 1).</summary>
    public int BatchSize { get; init; } = 1;

    /// <summary>Visit samples in a seeded permutation that changes every epoch; false: dataset order.</summary>
    public bool Shuffle { get; init; } = true;

    /// <summary>Seed of the shuffles and flips.</summary>
    public ulong Seed { get; init; }

    /// <summary>The resize rule; null keeps every image's size.</summary>
    public ResizeSpec? Resize { get; init; } = new ResizeSpec(600, 1000);

    /// <summary>
    /// Multi-scale training: when non-empty, each batch's shorter-side target is one of these, drawn per batch from
    /// (seed, epoch, batch), in place of <see cref="Resize"/>'s MinSize (its MaxSize still caps the longer side). One
    /// size per batch, not per image: the images of a batch then need no padding to a common size, which would
    /// change what a per-image normalisation (group norm) sees.
    /// </summary>
    public int[]? MinSizeChoices { get; init; }

    /// <summary>Probability of mirroring a sample left–right (0 for evaluation).</summary>
    public double FlipProbability { get; init; } = 0.5;

    /// <summary>Per-channel normalisation of the output pixels.</summary>
    public ImageNormalization Normalization { get; init; } = ImageNormalization.ImageNet;

    /// <summary>Background loading threads; 0 loads on the consuming thread.</summary>
    public int Workers { get; init; } = 2;

    /// <summary>How many batches the workers may prepare ahead of the consumer (≥ 1).</summary>
    public int PrefetchBatches { get; init; } = 2;

    /// <summary>Leave out the last batch when it would be smaller than <see cref="BatchSize"/>.</summary>
    public bool DropLast { get; init; }

    /// <summary>Clip boxes to the image and drop those left with no width or height (torchvision's COCO reference does this).</summary>
    public bool ClipBoxes { get; init; } = true;
}

/// <summary>One prepared sample: normalised pixels and annotations in resized-image coordinates.</summary>
public sealed class LoadedSample
{
    private float[]? _buffer;

    internal LoadedSample(float[] buffer, int datasetIndex, string id, int width, int height, int originalWidth, int originalHeight,
        double scale, float scaleX, float scaleY, bool flipped, IReadOnlyList<ObjectAnnotation> objects)
    {
        _buffer = buffer;
        DatasetIndex = datasetIndex; Id = id; Width = width; Height = height;
        OriginalWidth = originalWidth; OriginalHeight = originalHeight;
        Scale = scale; ScaleX = scaleX; ScaleY = scaleY; Flipped = flipped; Objects = objects;
    }

    /// <summary>Index of the sample in the dataset.</summary>
    public int DatasetIndex { get; }

    /// <summary>The dataset's sample id.</summary>
    public string Id { get; }

    /// <summary>Width of the resized image.</summary>
    public int Width { get; }

    /// <summary>Height of the resized image.</summary>
    public int Height { get; }

    /// <summary>Width of the image as decoded.</summary>
    public int OriginalWidth { get; }

    /// <summary>Height of the image as decoded.</summary>
    public int OriginalHeight { get; }

    /// <summary>The resize rule's scale (1 without resizing).</summary>
    public double Scale { get; }

    /// <summary>Width / OriginalWidth: the factor applied to x coordinates (torchvision's resize_boxes ratio).</summary>
    public float ScaleX { get; }

    /// <summary>Height / OriginalHeight: the factor applied to y coordinates.</summary>
    public float ScaleY { get; }

    /// <summary>Whether the image and its boxes were mirrored left–right.</summary>
    public bool Flipped { get; }

    /// <summary>Objects with boxes in resized (and, when <see cref="Flipped"/>, mirrored) coordinates; Area scaled likewise.</summary>
    public IReadOnlyList<ObjectAnnotation> Objects { get; }

    /// <summary>Normalised pixels, channel-major (3, Height, Width).</summary>
    /// <exception cref="ObjectDisposedException">The batch holding the sample was disposed.</exception>
    public ReadOnlySpan<float> Pixels => (_buffer ?? throw new ObjectDisposedException(nameof(LoadedSample), "the batch holding this sample was disposed"))
        .AsSpan(0, 3 * Width * Height);

    /// <summary>
    /// Maps a box in this sample's resized (mirrored when flipped) coordinates back to the original
    /// image by the rule detections use (<see cref="Model.Detector.Detect(IReadOnlyList{Model.PreparedImage}, float)"/>):
    /// x · (OriginalWidth / Width), y · (OriginalHeight / Height), float32 quotients and products as
    /// torchvision's resize_boxes computes them.
    /// </summary>
    public Box ToOriginal(Box box)
    {
        float rx = (float)OriginalWidth / Width, ry = (float)OriginalHeight / Height;
        var b = ImageTransforms.Scale(box, rx, ry);
        return Flipped ? ImageTransforms.FlipHorizontal(b, OriginalWidth) : b;
    }

    internal void Release()
    {
        float[]? b = Interlocked.Exchange(ref _buffer, null);
        if (b is not null) ArrayPool<float>.Shared.Return(b);
    }
}

/// <summary>A batch of prepared samples. Dispose it to recycle its pixel buffers.</summary>
public sealed class DetectionBatch : IReadOnlyList<LoadedSample>, IDisposable
{
    private readonly LoadedSample[] _samples;

    internal DetectionBatch(int epoch, int index, LoadedSample[] samples)
    {
        Epoch = epoch;
        Index = index;
        _samples = samples;
    }

    /// <summary>The epoch the batch belongs to.</summary>
    public int Epoch { get; }

    /// <summary>Position of the batch within its epoch.</summary>
    public int Index { get; }

    /// <inheritdoc />
    public int Count => _samples.Length;

    /// <inheritdoc />
    public LoadedSample this[int index] => _samples[index];

    /// <summary>The largest width and height in the batch, each rounded up to a multiple of <paramref name="divisor"/> (torchvision's batch_images uses 32).</summary>
    public (int Width, int Height) PaddedSize(int divisor = 32)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(divisor, 0);
        int w = 0, h = 0;
        foreach (var s in _samples) { w = Math.Max(w, s.Width); h = Math.Max(h, s.Height); }
        return ((w + divisor - 1) / divisor * divisor, (h + divisor - 1) / divisor * divisor);
    }

    /// <summary>
    /// Copies the batch into <paramref name="nchw"/> laid out (Count, 3, <paramref name="height"/>,
    /// <paramref name="width"/>), each image at the top-left corner and zeros elsewhere.
    /// </summary>
    public void CopyTo(Span<float> nchw, int width, int height)
    {
        long plane = (long)width * height;
        if (nchw.Length < _samples.Length * 3 * plane)
            throw new ArgumentException($"expected at least {_samples.Length} × 3 × {height} × {width} = {_samples.Length * 3 * plane} floats, got {nchw.Length}", nameof(nchw));
        for (int n = 0; n < _samples.Length; n++)
        {
            var s = _samples[n];
            if (s.Width > width || s.Height > height)
                throw new ArgumentException($"sample {n} is {s.Width}×{s.Height}, larger than the {width}×{height} target", nameof(width));
            ReadOnlySpan<float> src = s.Pixels;
            for (int c = 0; c < 3; c++)
            {
                Span<float> dst = nchw.Slice((int)((n * 3 + c) * plane), (int)plane);
                for (int y = 0; y < s.Height; y++)
                {
                    src.Slice((c * s.Height + y) * s.Width, s.Width).CopyTo(dst.Slice(y * width, s.Width));
                    dst.Slice(y * width + s.Width, width - s.Width).Clear();
                }
                dst[(s.Height * width)..].Clear();
            }
        }
    }

    /// <inheritdoc />
    public IEnumerator<LoadedSample> GetEnumerator() => ((IEnumerable<LoadedSample>)_samples).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Returns the pixel buffers to the pool; the samples' <see cref="LoadedSample.Pixels"/> become unusable.</summary>
    public void Dispose()
    {
        foreach (var s in _samples) s.Release();
    }
}

/// <summary>Loads, transforms and batches a dataset on background threads; see the file comment.</summary>
public sealed class DetectionDataLoader : IDisposable
{
    private const ulong ShuffleTag = 0x53485546464C4531UL, FlipTag = 0x464C495031UL, SizeTag = 0x53495A4531UL;

    private readonly HashSet<EpochRun> _runs = [];
    private bool _disposed;
    private int _liveWorkers;

    /// <summary>Creates a loader over <paramref name="dataset"/>; nothing runs until an epoch is enumerated.</summary>
    public DetectionDataLoader(IDetectionDataset dataset, DataLoaderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        options ??= new DataLoaderOptions();
        if (options.BatchSize < 1) throw new ArgumentException($"BatchSize {options.BatchSize} must be ≥ 1", nameof(options));
        if (options.Workers < 0) throw new ArgumentException($"Workers {options.Workers} must be ≥ 0", nameof(options));
        if (options.PrefetchBatches < 1) throw new ArgumentException($"PrefetchBatches {options.PrefetchBatches} must be ≥ 1", nameof(options));
        if (!(options.FlipProbability is >= 0 and <= 1)) throw new ArgumentException($"FlipProbability {options.FlipProbability} must be in [0, 1]", nameof(options));
        ArgumentNullException.ThrowIfNull(options.Normalization, "options.Normalization");
        options.Normalization.Validate(nameof(options));
        options.Resize?.Validate();
        if (options.MinSizeChoices is { Length: > 0 } sizes)
        {
            if (options.Resize is null) throw new ArgumentException("MinSizeChoices needs a Resize rule (its MaxSize caps the longer side)", nameof(options));
            foreach (int m in sizes)
                if (m <= 0) throw new ArgumentException($"MinSizeChoices must be positive; got {m}", nameof(options));
        }
        Dataset = dataset;
        Options = options;
    }

    /// <summary>The dataset.</summary>
    public IDetectionDataset Dataset { get; }

    /// <summary>The options.</summary>
    public DataLoaderOptions Options { get; }

    /// <summary>Batches per epoch.</summary>
    public int BatchCount => Options.DropLast ? Dataset.Count / Options.BatchSize : (Dataset.Count + Options.BatchSize - 1) / Options.BatchSize;

    /// <summary>The dataset indices in the order epoch <paramref name="epoch"/> visits them.</summary>
    public int[] EpochOrder(int epoch)
    {
        var order = new int[Dataset.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        if (Options.Shuffle)
        {
            // Fisher–Yates driven by a generator of (seed, epoch) alone.
            var rng = SeededRandom.For(ShuffleTag, Options.Seed, (ulong)(uint)epoch);
            for (int i = order.Length - 1; i > 0; i--)
            {
                int j = rng.NextInt(i + 1);
                (order[i], order[j]) = (order[j], order[i]);
            }
        }
        return order;
    }

    /// <summary>Whether sample <paramref name="datasetIndex"/> is mirrored in epoch <paramref name="epoch"/>.</summary>
    public bool IsFlipped(int epoch, int datasetIndex) =>
        Options.FlipProbability > 0
        && SeededRandom.For(FlipTag, Options.Seed, (ulong)(uint)epoch, (ulong)(uint)datasetIndex).NextDouble() < Options.FlipProbability;

    /// <summary>The resize rule of batch <paramref name="batch"/> of epoch <paramref name="epoch"/> (null: images keep their size).</summary>
    public ResizeSpec? ResizeFor(int epoch, int batch)
    {
        if (Options.Resize is not { } rule || Options.MinSizeChoices is not { Length: > 0 } sizes) return Options.Resize;
        if (sizes.Length == 1) return rule with { MinSize = sizes[0] };
        var rng = SeededRandom.For(SizeTag, Options.Seed, (ulong)(uint)epoch, (ulong)(uint)batch);
        return rule with { MinSize = sizes[rng.NextInt(sizes.Length)] };
    }

    /// <summary>
    /// The batches of epoch <paramref name="epoch"/>, in order. Loading starts when enumeration
    /// starts and stops when the enumerator is disposed (foreach does this) or the loader is.
    /// A sample that fails to load rethrows its exception from MoveNext at its batch.
    /// </summary>
    public IEnumerable<DetectionBatch> Epoch(int epoch)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new EpochEnumerable(this, epoch);
    }

    /// <summary>Prepares one sample of batch <paramref name="batch"/> on the calling thread (what the workers run).</summary>
    public LoadedSample LoadSample(int datasetIndex, int epoch, int batch, ImageResizer resizer)
    {
        ArgumentNullException.ThrowIfNull(resizer);
        ArgumentOutOfRangeException.ThrowIfNegative(datasetIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(datasetIndex, Dataset.Count);
        var o = Options;
        DetectionSample sample = Dataset.Load(datasetIndex);
        RgbImage img = sample.Image;
        int w = img.Width, h = img.Height;
        double scale = 1;
        int ow = w, oh = h;
        if (ResizeFor(epoch, batch) is { } rule)
        {
            scale = rule.ScaleFor(w, h);
            (ow, oh) = rule.OutputSize(w, h);
        }
        bool flip = IsFlipped(epoch, datasetIndex);
        float[] buffer = ArrayPool<float>.Shared.Rent(3 * ow * oh);
        try
        {
            if (ow == w && oh == h) ImageTransforms.ToTensor(img, o.Normalization, buffer, flip);
            else resizer.ResizeNormalize(img, ow, oh, flip, o.Normalization, buffer);
        }
        catch
        {
            ArrayPool<float>.Shared.Return(buffer);
            throw;
        }
        // torchvision's resize_boxes ratios: resized size / original size, per axis.
        float sx = (float)ow / w, sy = (float)oh / h;
        var objects = new List<ObjectAnnotation>(sample.Objects.Count);
        foreach (var a in sample.Objects)
        {
            Box b = flip ? ImageTransforms.FlipHorizontal(a.Box, w) : a.Box;
            b = ImageTransforms.Scale(b, sx, sy);
            if (o.ClipBoxes)
            {
                b = ImageTransforms.Clip(b, ow, oh);
                if (!(b.X2 > b.X1 && b.Y2 > b.Y1)) continue;
            }
            objects.Add(a with { Box = b, Area = a.Area * sx * sy });
        }
        return new LoadedSample(buffer, datasetIndex, sample.Id, ow, oh, w, h, scale, sx, sy, flip, objects);
    }

    /// <summary>Stops every running epoch and joins its threads; undelivered buffers go back to the pool.</summary>
    public void Dispose()
    {
        EpochRun[] runs;
        lock (_runs)
        {
            if (_disposed) return;
            _disposed = true;
            runs = [.. _runs];
        }
        foreach (var r in runs) r.Dispose();
    }

    /// <summary>Worker threads running now, over all epochs (for tests).</summary>
    internal int LiveWorkers => Volatile.Read(ref _liveWorkers);

    /// <summary>Number of epochs being enumerated now (for tests).</summary>
    internal int ActiveRuns { get { lock (_runs) return _runs.Count; } }

    private void Register(EpochRun run)
    {
        lock (_runs)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _runs.Add(run);
        }
    }

    private void Unregister(EpochRun run)
    {
        lock (_runs) _runs.Remove(run);
    }

    private sealed class EpochEnumerable(DetectionDataLoader loader, int epoch) : IEnumerable<DetectionBatch>
    {
        public IEnumerator<DetectionBatch> GetEnumerator() => new EpochRun(loader, epoch);

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    }

    /// <summary>One enumeration of one epoch: its workers, slots and consumer position.</summary>
    private sealed class EpochRun : IEnumerator<DetectionBatch>
    {
        private readonly DetectionDataLoader _loader;
        private readonly int _epoch, _batchSize, _prefetch, _total, _batchCount;
        private readonly int[] _order;
        private readonly object _gate = new();
        // Ring of PrefetchBatches × BatchSize slots: position p of the epoch uses slot p % window.
        // A worker only starts position p once p's batch is within PrefetchBatches of the
        // consumer, so the slot's previous occupant (p − window) has been handed out.
        private readonly LoadedSample?[] _results;
        private readonly Exception?[] _errors;
        private readonly bool[] _filled;
        private Thread[]? _threads;
        private ImageResizer? _inlineResizer;
        private int _nextPosition, _consumedBatches;
        private bool _stopping, _disposed;

        public EpochRun(DetectionDataLoader loader, int epoch)
        {
            _loader = loader;
            _epoch = epoch;
            var o = loader.Options;
            _batchSize = o.BatchSize;
            _prefetch = o.PrefetchBatches;
            _batchCount = loader.BatchCount;
            _total = Math.Min(loader.Dataset.Count, _batchCount * _batchSize);
            _order = loader.EpochOrder(epoch);
            int window = _prefetch * _batchSize;
            _results = new LoadedSample?[window];
            _errors = new Exception?[window];
            _filled = new bool[window];
            loader.Register(this);
        }

        public DetectionBatch Current { get; private set; } = null!;

        object IEnumerator.Current => Current;

        public bool MoveNext()
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_consumedBatches >= _batchCount) return false;
            int first = _consumedBatches * _batchSize, count = Math.Min(_batchSize, _total - first);
            var samples = new LoadedSample[count];
            Exception? error = null;
            if (_loader.Options.Workers == 0)
            {
                _inlineResizer ??= new ImageResizer();
                try
                {
                    for (int i = 0; i < count; i++) samples[i] = _loader.LoadSample(_order[first + i], _epoch, _consumedBatches, _inlineResizer);
                }
                catch (Exception e)
                {
                    error = e;
                }
                _consumedBatches++;
            }
            else
            {
                if (_threads is null) StartWorkers();
                lock (_gate)
                {
                    for (int i = 0; i < count; i++)
                    {
                        int slot = (first + i) % _results.Length;
                        while (!_filled[slot] && !_stopping) Monitor.Wait(_gate);
                        ObjectDisposedException.ThrowIf(_stopping, this);
                        samples[i] = _results[slot]!;
                        error ??= _errors[slot];
                        _results[slot] = null;
                        _errors[slot] = null;
                        _filled[slot] = false;
                    }
                    _consumedBatches++;
                    Monitor.PulseAll(_gate);
                }
            }
            if (error is not null)
            {
                foreach (var s in samples) s?.Release();
                Dispose();
                ExceptionDispatchInfo.Capture(error).Throw();
            }
            Current = new DetectionBatch(_epoch, _consumedBatches - 1, samples);
            return true;
        }

        private void StartWorkers()
        {
            int n = Math.Max(1, Math.Min(_loader.Options.Workers, _total));
            _threads = new Thread[n];
            for (int i = 0; i < n; i++)
            {
                _threads[i] = new Thread(Work) { IsBackground = true, Name = $"GRcn data loader {i}" };
                _threads[i].Start();
            }
        }

        private void Work()
        {
            Interlocked.Increment(ref _loader._liveWorkers);
            try
            {
                WorkLoop();
            }
            finally
            {
                Interlocked.Decrement(ref _loader._liveWorkers);
            }
        }

        private void WorkLoop()
        {
            var resizer = new ImageResizer();
            while (true)
            {
                int position;
                lock (_gate)
                {
                    while (!_stopping && _nextPosition < _total && _nextPosition / _batchSize >= _consumedBatches + _prefetch)
                        Monitor.Wait(_gate);
                    if (_stopping || _nextPosition >= _total) return;
                    position = _nextPosition++;
                }
                LoadedSample? result = null;
                Exception? error = null;
                try
                {
                    result = _loader.LoadSample(_order[position], _epoch, position / _batchSize, resizer);
                }
                catch (Exception e)
                {
                    error = e;
                }
                lock (_gate)
                {
                    if (_stopping)
                    {
                        result?.Release();
                        return;
                    }
                    int slot = position % _results.Length;
                    _results[slot] = result;
                    _errors[slot] = error;
                    _filled[slot] = true;
                    Monitor.PulseAll(_gate);
                }
            }
        }

        public void Reset() => throw new NotSupportedException("enumerate the epoch again instead");

        public void Dispose()
        {
            Thread[]? threads;
            lock (_gate)
            {
                if (_disposed) return;
                _disposed = true;
                _stopping = true;
                threads = _threads;
                Monitor.PulseAll(_gate);
            }
            if (threads is not null)
                foreach (var t in threads) t.Join();
            for (int i = 0; i < _results.Length; i++)
            {
                _results[i]?.Release();
                _results[i] = null;
            }
            _loader.Unregister(this);
        }
    }
}
