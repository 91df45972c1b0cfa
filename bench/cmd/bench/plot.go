package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var targetColors = map[string]color.Color{
	"direct":     color.RGBA{R: 150, G: 150, B: 150, A: 255},
	"haproxy":    color.RGBA{R: 31, G: 119, B: 180, A: 255},
	"nginx":      color.RGBA{R: 44, G: 160, B: 44, A: 255},
	"agentplane": color.RGBA{R: 214, G: 39, B: 40, A: 255},
	// conversations' variants: lighter shades of their peer's colour
	"haproxy-hash":         color.RGBA{R: 100, G: 170, B: 230, A: 255},
	"haproxy-hash-bounded": color.RGBA{R: 23, G: 60, B: 120, A: 255},
	"nginx-hash":           color.RGBA{R: 130, G: 210, B: 120, A: 255},
}

// percentileTicks label the x axis, which is −log10(1−q): 0 is the median's 0.3, 1 is p90 ...
type percentileTicks struct{}

func (percentileTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for _, t := range []struct {
		x     float64
		label string
	}{{0, "p0"}, {math.Log10(2), "p50"}, {1, "p90"}, {2, "p99"}, {3, "p99.9"}, {4, "p99.99"}} {
		if t.x >= lo-1e-9 && t.x <= hi+1e-9 {
			ts = append(ts, plot.Tick{Value: t.x, Label: t.label})
		}
	}
	return ts
}

func latencies(s summary) []time.Duration { return s.Latencies }
func ttfts(s summary) []time.Duration     { return s.TTFTs }

// plotLatencies draws one panel per scenario: what of (latency or TTFT, log scale) by
// percentile, a line per target.
func plotLatencies(path string, results []scenarioResult, what string, of func(summary) []time.Duration) error {
	if len(results) == 0 {
		return nil
	}
	cols := 2
	rows := (len(results) + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	for i := range plots {
		plots[i] = make([]*plot.Plot, cols)
	}
	for i, res := range results {
		p := plot.New()
		p.Title.Text = res.sc.title
		p.Title.TextStyle.Font.Size = vg.Points(9)
		p.X.Label.Text = "percentile"
		p.Y.Label.Text = what + " (ms)"
		p.X.Tick.Marker = percentileTicks{}
		if slices.ContainsFunc(res.sums, func(s summary) bool { return len(of(s)) > 0 }) {
			p.Y.Scale = plot.LogScale{} // a log scale panics on a panel without data
			p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		}
		p.Add(plotter.NewGrid())
		p.Legend.Top = true
		p.Legend.Left = true
		for _, s := range res.sums {
			ls := of(s)
			n := len(ls)
			if n == 0 {
				continue
			}
			pts := make(plotter.XYs, 0, n)
			for k, l := range ls {
				q := float64(k) / float64(n)
				pts = append(pts, plotter.XY{X: -math.Log10(1 - q), Y: math.Max(float64(l)/1e6, 0.01)})
			}
			line, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			if c, ok := targetColors[s.Target]; ok {
				line.Color = c
			}
			line.Width = vg.Points(1.5)
			p.Add(line)
			p.Legend.Add(s.Target, line)
		}
		plots[i/cols][i%cols] = p
	}
	for r := range plots { // empty tiles need a plot to align
		for c := range plots[r] {
			if plots[r][c] == nil {
				plots[r][c] = plot.New()
				plots[r][c].HideAxes()
			}
		}
	}
	img := vgimg.New(vg.Points(float64(cols)*420), vg.Points(float64(rows)*300))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Points(10), PadY: vg.Points(10),
		PadTop: vg.Points(5), PadBottom: vg.Points(5), PadLeft: vg.Points(5), PadRight: vg.Points(5)}
	canvases := plot.Align(plots, tiles, dc)
	for r := range plots {
		for c := range plots[r] {
			plots[r][c].Draw(canvases[r][c])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return fmt.Errorf("%s plot: %w", what, err)
	}
	return nil
}
