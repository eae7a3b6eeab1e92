module github.com/ecomstream/platform/services/dlq-handler

go 1.26.0

replace (
	github.com/ecomstream/platform/pkg => ../../pkg
	github.com/ecomstream/platform/proto => ../../proto
	github.com/ecomstream/platform/sql => ../../sql
)

require (
	github.com/ecomstream/platform/pkg v0.0.0
	github.com/ecomstream/platform/sql v0.0.0
	github.com/jackc/pgx/v5 v5.12.0
)

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/text v0.42.0 // indirect
)
