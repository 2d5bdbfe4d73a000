//! `#[derive(Module)]`: implements `oar_nn::Module` for a struct by visiting
//! its fields in declaration order, each under its field name (tuple fields
//! under `0`, `1`, ...), so parameter names are PyTorch's dotted state-dict
//! keys (`conv1.weight`). A field marked `#[module(skip)]` (a config value, a
//! cached constant) is left out.
//!
//! Used through `oar::nn::Module` or `oar_nn::Module`; the generated code
//! names whichever of the two crates the deriving crate depends on.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{parse_macro_input, spanned::Spanned, Data, DeriveInput, Fields, Index};

#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// The path of the `oar_nn` crate as the deriving crate sees it.
fn nn_path() -> TokenStream2 {
    use proc_macro_crate::{crate_name, FoundCrate};
    if let Ok(found) = crate_name("oar-nn") {
        return match found {
            // Doc tests of oar-nn are separate crates that see it as `oar_nn`
            // (rustdoc sets this variable while compiling them).
            FoundCrate::Itself if std::env::var_os("UNSTABLE_RUSTDOC_TEST_PATH").is_some() => quote!(::oar_nn),
            FoundCrate::Itself => quote!(crate),
            FoundCrate::Name(name) => {
                let ident = format_ident!("{}", name);
                quote!(::#ident)
            }
        };
    }
    match crate_name("oar") {
        Ok(FoundCrate::Name(name)) => {
            let ident = format_ident!("{}", name);
            quote!(::#ident::nn)
        }
        // The facade itself (its examples, benches and tests) or no manifest entry.
        _ => quote!(::oar::nn),
    }
}

/// Whether the field carries `#[module(skip)]`; any other `module` attribute is an error.
fn skipped(field: &syn::Field) -> syn::Result<bool> {
    let mut skip = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else {
                Err(meta.error("unknown module attribute; expected `#[module(skip)]`"))
            }
        })?;
    }
    Ok(skip)
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[derive(Module)] supports structs; implement Module by hand for enums",
        ));
    };
    let nn = nn_path();
    let mut visits = Vec::new();
    let mut trainings = Vec::new();
    let members: Vec<(syn::Member, String, &syn::Field)> = match &data.fields {
        Fields::Named(f) => f
            .named
            .iter()
            .map(|field| {
                let ident = field.ident.clone().expect("named field");
                let name = ident.to_string();
                let name = name.strip_prefix("r#").unwrap_or(&name).to_string();
                (syn::Member::Named(ident), name, field)
            })
            .collect(),
        Fields::Unnamed(f) => f
            .unnamed
            .iter()
            .enumerate()
            .map(|(i, field)| {
                (syn::Member::Unnamed(Index { index: i as u32, span: field.span() }), i.to_string(), field)
            })
            .collect(),
        Fields::Unit => Vec::new(),
    };
    for (member, name, field) in members {
        if skipped(field)? {
            continue;
        }
        visits.push(quote! { visitor.child(#name, &self.#member); });
        trainings.push(quote! { #nn::Module::set_training(&mut self.#member, training); });
    }
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics #nn::Module for #ident #ty_generics #where_clause {
            fn visit(&self, visitor: &mut #nn::Visitor<'_>) {
                #(#visits)*
            }
            fn set_training(&mut self, training: bool) {
                let _ = training;
                #(#trainings)*
            }
        }
    })
}
