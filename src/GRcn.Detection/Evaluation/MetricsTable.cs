// Plain-text table rendering shared by the evaluation results: a header row, a rule, data rows;
// the first column left-aligned, the others right-aligned, columns padded to their widest cell.
using System.Globalization;
using System.Text;

namespace GRcn.Detection.Evaluation;

internal static class MetricsTable
{
    /// <summary>A metric cell: 3 decimals, "-" for the −1 "no ground truth" marker.</summary>
    public static string Cell(double v) => v < 0 ? "-" : v.ToString("0.000", CultureInfo.InvariantCulture);

    public static void Render(StringBuilder sb, string[] header, IReadOnlyList<string[]> rows)
    {
        var width = new int[header.Length];
        for (int c = 0; c < header.Length; c++) width[c] = header[c].Length;
        foreach (var r in rows)
            for (int c = 0; c < header.Length; c++) width[c] = Math.Max(width[c], r[c].Length);
        void Row(string[] cells)
        {
            for (int c = 0; c < cells.Length; c++)
            {
                if (c > 0) sb.Append("  ");
                sb.Append(c == 0 ? cells[c].PadRight(width[c]) : cells[c].PadLeft(width[c]));
            }
            sb.Append('\n');
        }
        Row(header);
        int total = width.Sum() + 2 * (width.Length - 1);
        sb.Append('-', total).Append('\n');
        foreach (var r in rows) Row(r);
    }
}
