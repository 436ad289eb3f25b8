"""Dagster metadata built from the package's own data: column schemas and table previews."""

import dagster as dg
import pyarrow as pa

from cdr_assets.schema import describe_columns


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """The table's columns as the Dagster UI documents them (`dagster/column_schema`)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=column.type,
                description=column.description,
                constraints=dg.TableColumnConstraints(nullable=column.nullable),
            )
            for column in describe_columns(schema)
        ]
    )


def preview_markdown(table: pa.Table | None) -> str:
    """A small Markdown table for the Dagster UI (no pandas/tabulate needed)."""
    if table is None or table.num_rows == 0:
        return "no rows"
    header = "| " + " | ".join(table.column_names) + " |"
    rule = "|" + "---|" * table.num_columns
    rows = [
        "| " + " | ".join("" if v is None else str(v) for v in row.values()) + " |"
        for row in table.to_pylist()
    ]
    return "\n".join([header, rule, *rows])
