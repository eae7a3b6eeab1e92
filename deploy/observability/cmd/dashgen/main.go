// Command dashgen writes the Grafana dashboards (observability.Dashboards) as JSON into a
// directory, by default ../grafana/dashboards (run it in deploy/observability:
// `go run ./cmd/dashgen`), and removes the JSON files there it did not write. A test fails when
// the committed files differ from its output.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ecomstream/platform/deploy/observability"
)

func main() {
	dir := flag.String("dir", filepath.Join("..", "grafana", "dashboards"), "directory of the dashboards' JSON files")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "dashgen:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	ds, err := observability.Dashboards()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, d := range ds {
		keep[d.File] = true
		if err := os.WriteFile(filepath.Join(dir, d.File), d.JSON, 0o644); err != nil {
			return err
		}
	}
	old, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if !keep[filepath.Base(f)] {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	fmt.Printf("dashgen: %d dashboards in %s\n", len(ds), dir)
	return nil
}
