package warehouse

// ValidateBatch checks the batch invariants and row checks every backend relies on: a broken
// invariant is an ErrInvalidBatch, a bad row a *RowError. Neither is transient.
func ValidateBatch(group string, b Batch) error { return validateBatch(group, b) }
