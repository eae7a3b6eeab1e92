// Package conformance holds the conformance suite of bq-writer's two warehouse backends: the same
// sequence of warehouse.Batch values is written through DuckDB (warehouse.OpenDuckDB) and through
// BigQuery (bqwh on the emulator, bqcatalog as its catalog), and every prod relation analysts
// query (prodmodel.Relations) must read back the same rows from both, column for column except
// loaded_at. The package has no code outside its tests; the suite is TestIntegrationConformance.
package conformance
