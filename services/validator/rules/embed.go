// Package rulefiles holds the validator's rule files, one per entity,
// embedded in the binary as the default rule set (RULES_DIR replaces them).
// The format is described in services/validator/README.md#rules.
package rulefiles

import "embed"

// FS holds the *.yaml rule files.
//
//go:embed *.yaml
var FS embed.FS
