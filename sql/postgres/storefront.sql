-- The storefront's source database (products, categories, customers) in one schema, ${schema}.
-- Applied by deploy/local for the local stack and the tests (each test its own schema); in
-- production the shop owns these tables and only the publication, the role's grants and the
-- replica identity are ours to ask for. Every statement is idempotent.
CREATE SCHEMA IF NOT EXISTS ${schema};

CREATE TABLE IF NOT EXISTS ${schema}.categories (
  slug        text PRIMARY KEY,
  name        text NOT NULL,
  parent_slug text,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- No foreign key to categories: an unknown category is a bad change the validator's rules catch.
CREATE TABLE IF NOT EXISTS ${schema}.products (
  product_id  text PRIMARY KEY,
  sku         text NOT NULL,
  name        text NOT NULL,
  category    text,
  brand       text,
  price_minor bigint NOT NULL,
  currency    text NOT NULL,
  is_active   boolean NOT NULL DEFAULT true,
  deleted_at  timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ${schema}.customers (
  customer_id text PRIMARY KEY,
  email       text NOT NULL,
  name        text NOT NULL,
  country     text NOT NULL,
  is_active   boolean NOT NULL DEFAULT true,
  deleted_at  timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- updated_at is the row's change time: the wall clock of the statement's row, not the
-- transaction start, so two changes of one row in one transaction differ.
CREATE OR REPLACE FUNCTION ${schema}.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := clock_timestamp();
  RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER categories_touch BEFORE UPDATE ON ${schema}.categories
  FOR EACH ROW EXECUTE FUNCTION ${schema}.touch_updated_at();
CREATE OR REPLACE TRIGGER products_touch BEFORE UPDATE ON ${schema}.products
  FOR EACH ROW EXECUTE FUNCTION ${schema}.touch_updated_at();
CREATE OR REPLACE TRIGGER customers_touch BEFORE UPDATE ON ${schema}.customers
  FOR EACH ROW EXECUTE FUNCTION ${schema}.touch_updated_at();

-- Logical replication: deletes and unchanged TOASTed columns carry the whole old row.
ALTER TABLE ${schema}.products REPLICA IDENTITY FULL;
ALTER TABLE ${schema}.customers REPLICA IDENTITY FULL;

-- Keyset pagination of the snapshot reads in primary-key order uses the primary keys; the
-- reconciliation of recent changes reads by updated_at.
CREATE INDEX IF NOT EXISTS products_updated_at ON ${schema}.products (updated_at);
CREATE INDEX IF NOT EXISTS customers_updated_at ON ${schema}.customers (updated_at);

-- A publication outlives its tables (DROP SCHEMA ... CASCADE leaves it empty): when it exists,
-- set its tables again, so re-created tables are published and nothing else is.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '${schema}_catalog') THEN
    CREATE PUBLICATION ${schema}_catalog FOR TABLE ${schema}.products, ${schema}.customers;
  ELSE
    ALTER PUBLICATION ${schema}_catalog SET TABLE ${schema}.products, ${schema}.customers;
  END IF;
END $$;

-- catalog-sync's role: replication and reads of the catalog tables, nothing else. Created
-- without a password here; deploy/local sets the local one.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${cdc_role}') THEN
    CREATE ROLE ${cdc_role} LOGIN REPLICATION;
  END IF;
END $$;
GRANT USAGE ON SCHEMA ${schema} TO ${cdc_role};
GRANT SELECT ON ${schema}.categories, ${schema}.products, ${schema}.customers TO ${cdc_role};
