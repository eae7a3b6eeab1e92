package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	now := time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)
	tests := []struct {
		name, from, to string
		want           [2]time.Time
		err            string
	}{
		{"times", "2026-12-01T20:00:00Z", "2026-12-01T20:30:00Z", [2]time.Time{now.Add(-time.Hour), now.Add(-30 * time.Minute)}, ""},
		{"durations before now", "2h", "1h", [2]time.Time{now.Add(-2 * time.Hour), now.Add(-time.Hour)}, ""},
		{"to defaults to now", "15m", "", [2]time.Time{now.Add(-15 * time.Minute), now}, ""},
		{"from required", "", "", [2]time.Time{}, "-from"},
		{"not a time", "yesterday", "", [2]time.Time{}, "-from \"yesterday\""},
		{"empty window", "1h", "2h", [2]time.Time{}, "is not before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := window(tt.from, tt.to, now)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil || !w.From.Equal(tt.want[0]) || !w.To.Equal(tt.want[1]) {
				t.Errorf("window %v, %v; want %v", w, err, tt.want)
			}
		})
	}
}

// TestRunRefusesBadInvocations: each mistake stops with exit status 1 and one line naming it,
// before anything is read.
func TestRunRefusesBadInvocations(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string // WAREHOUSE_QUERY_TOKEN
		want string
	}{
		{"unknown source", []string{"-source", "payments", "-from", "1h"}, "t", `-source "payments"`},
		{"no token", []string{"-from", "1h"}, "", "WAREHOUSE_QUERY_TOKEN"},
		{"bad window", []string{"-from", "soon"}, "t", "-from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WAREHOUSE_QUERY_TOKEN", tt.env)
			code, err := run(context.Background(), tt.args)
			if code != exitError || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run = %d, %v; want %d and an error naming %q", code, err, exitError, tt.want)
			}
		})
	}
}
