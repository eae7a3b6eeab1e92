module github.com/ecomstream/platform/sql

go 1.26
