package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// recoveryMsg is bq-writer's WARN when a partition's stored position does
// not fit the log and POSITION_RECOVERY starts it elsewhere
// (services/bq-writer/internal/sink/positions.go; TestRecoveryMsgIsBQWriters
// fails when the two part).
const recoveryMsg = "position does not fit the log; starting elsewhere as POSITION_RECOVERY allows"

// logCursor reads a service's log from where this run's lines begin (the
// log file is appended to across runs).
type logCursor struct {
	path string
	off  int64
}

// logMark is a cursor at the current end of the log at path (0 when it does
// not exist yet).
func logMark(path string) *logCursor {
	c := &logCursor{path: path}
	if fi, err := os.Stat(path); err == nil {
		c.off = fi.Size()
	}
	return c
}

// recoveries returns one line per position recovery bq-writer logged since
// the last call: which partition, where it started, and why.
func (c *logCursor) recoveries() []string {
	f, err := os.Open(c.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(c.off, io.SeekStart); err != nil {
		return nil
	}
	var out []string
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil { // EOF, or a line not yet complete: read it next time
			return out
		}
		c.off += int64(len(line))
		var l struct {
			Msg       string `json:"msg"`
			Topic     string `json:"topic"`
			Partition int    `json:"partition"`
			Problem   string `json:"problem"`
			Start     int64  `json:"start"`
		}
		if json.Unmarshal(line, &l) != nil || l.Msg != recoveryMsg {
			continue
		}
		out = append(out, fmt.Sprintf("%s/%d from offset %d: %s", l.Topic, l.Partition, l.Start, l.Problem))
	}
}
